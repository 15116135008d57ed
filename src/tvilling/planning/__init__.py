"""Planning: production scheduling and maintenance planning on a real optimiser (OR-Tools CP-SAT, HiGHS)."""
