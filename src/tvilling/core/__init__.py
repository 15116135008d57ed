"""Pure domain of Tvilling: ids, twins, events, errors. No I/O, no other tvilling imports."""
