/* A tank filled by a pump and drained by an outlet and a leak, FMI 2.0, model exchange and co-simulation in
   one binary, with FMU state get/set and serialisation (a test model of Tvilling).

   der(level) = (q_in - (cv + leak) * sqrt(level)) / (area * 3600)   [m/s; flows in m3/h]
   q_out = cv * sqrt(level),  pump_power = pump_kw * q_in.
   Value references: 0 q_in (input), 1 level (output, state), 2 der(level), 3 q_out, 4 pump_power (outputs),
   5 area, 6 cv, 7 pump_kw (fixed parameters), 8 leak (tunable parameter).
   Co-simulation steps with classical Runge-Kutta, sub-steps of at most one second. */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "fmi2Functions.h"

enum { QIN, LEVEL, DLEVEL, QOUT, POWER, AREA, CV, PUMPKW, LEAK, NVARS };

typedef struct {
    double r[NVARS];
    double time;
} Tank;

static double root(double h) { return h > 0 ? sqrt(h) : 0.0; }

static double slope(const Tank *m, double h) {
    return (m->r[QIN] - (m->r[CV] + m->r[LEAK]) * root(h)) / (m->r[AREA] * 3600.0);
}

static void update(Tank *m) {
    m->r[DLEVEL] = slope(m, m->r[LEVEL]);
    m->r[QOUT] = m->r[CV] * root(m->r[LEVEL]);
    m->r[POWER] = m->r[PUMPKW] * m->r[QIN];
}

const char *fmi2GetTypesPlatform(void) { return fmi2TypesPlatform; }
const char *fmi2GetVersion(void) { return fmi2Version; }

fmi2Component fmi2Instantiate(fmi2String name, fmi2Type type, fmi2String guid, fmi2String resources,
                              const fmi2CallbackFunctions *functions, fmi2Boolean visible, fmi2Boolean logging) {
    (void)name; (void)type; (void)resources; (void)functions; (void)visible; (void)logging;
    if (strcmp(guid, "{tank2-0001}") != 0) return NULL;
    Tank *m = calloc(1, sizeof(Tank));
    m->r[QIN] = 2.0; m->r[LEVEL] = 1.0; m->r[AREA] = 2.0; m->r[CV] = 2.0; m->r[PUMPKW] = 0.5; m->r[LEAK] = 0.0;
    update(m);
    return m;
}

void fmi2FreeInstance(fmi2Component c) { free(c); }

fmi2Status fmi2SetDebugLogging(fmi2Component c, fmi2Boolean on, size_t n, const fmi2String categories[]) {
    (void)c; (void)on; (void)n; (void)categories; return fmi2OK;
}

fmi2Status fmi2SetupExperiment(fmi2Component c, fmi2Boolean tolDefined, fmi2Real tol, fmi2Real start,
                               fmi2Boolean stopDefined, fmi2Real stop) {
    (void)tolDefined; (void)tol; (void)stopDefined; (void)stop;
    ((Tank *)c)->time = start; return fmi2OK;
}

fmi2Status fmi2EnterInitializationMode(fmi2Component c) { (void)c; return fmi2OK; }
fmi2Status fmi2ExitInitializationMode(fmi2Component c) { update((Tank *)c); return fmi2OK; }
fmi2Status fmi2Terminate(fmi2Component c) { (void)c; return fmi2OK; }

fmi2Status fmi2GetReal(fmi2Component c, const fmi2ValueReference vr[], size_t n, fmi2Real value[]) {
    Tank *m = c;
    update(m);
    for (size_t i = 0; i < n; i++) {
        if (vr[i] >= NVARS) return fmi2Error;
        value[i] = m->r[vr[i]];
    }
    return fmi2OK;
}

fmi2Status fmi2SetReal(fmi2Component c, const fmi2ValueReference vr[], size_t n, const fmi2Real value[]) {
    Tank *m = c;
    for (size_t i = 0; i < n; i++) {
        if (vr[i] == DLEVEL || vr[i] == QOUT || vr[i] == POWER || vr[i] >= NVARS) return fmi2Error;
        if (vr[i] == AREA && value[i] <= 0) return fmi2Error;
        m->r[vr[i]] = value[i];
    }
    update(m);
    return fmi2OK;
}

/* FMU state: the whole instance, copied */
fmi2Status fmi2GetFMUstate(fmi2Component c, fmi2FMUstate *state) {
    if (*state == NULL) *state = malloc(sizeof(Tank));
    memcpy(*state, c, sizeof(Tank));
    return fmi2OK;
}
fmi2Status fmi2SetFMUstate(fmi2Component c, fmi2FMUstate state) {
    memcpy(c, state, sizeof(Tank)); update(c); return fmi2OK;
}
fmi2Status fmi2FreeFMUstate(fmi2Component c, fmi2FMUstate *state) {
    (void)c; free(*state); *state = NULL; return fmi2OK;
}
fmi2Status fmi2SerializedFMUstateSize(fmi2Component c, fmi2FMUstate state, size_t *size) {
    (void)c; (void)state; *size = sizeof(Tank); return fmi2OK;
}
fmi2Status fmi2SerializeFMUstate(fmi2Component c, fmi2FMUstate state, fmi2Byte bytes[], size_t size) {
    (void)c;
    if (size != sizeof(Tank)) return fmi2Error;
    memcpy(bytes, state, sizeof(Tank)); return fmi2OK;
}
fmi2Status fmi2DeSerializeFMUstate(fmi2Component c, const fmi2Byte bytes[], size_t size, fmi2FMUstate *state) {
    (void)c;
    if (size != sizeof(Tank)) return fmi2Error;
    if (*state == NULL) *state = malloc(sizeof(Tank));
    memcpy(*state, bytes, sizeof(Tank)); return fmi2OK;
}

/* model exchange */
fmi2Status fmi2EnterEventMode(fmi2Component c) { (void)c; return fmi2OK; }
fmi2Status fmi2NewDiscreteStates(fmi2Component c, fmi2EventInfo *info) {
    (void)c;
    memset(info, 0, sizeof(*info));
    return fmi2OK;
}
fmi2Status fmi2EnterContinuousTimeMode(fmi2Component c) { (void)c; return fmi2OK; }
fmi2Status fmi2CompletedIntegratorStep(fmi2Component c, fmi2Boolean noPrior, fmi2Boolean *enterEvent,
                                       fmi2Boolean *terminate) {
    (void)c; (void)noPrior; *enterEvent = fmi2False; *terminate = fmi2False; return fmi2OK;
}
fmi2Status fmi2SetTime(fmi2Component c, fmi2Real time) { ((Tank *)c)->time = time; return fmi2OK; }
fmi2Status fmi2SetContinuousStates(fmi2Component c, const fmi2Real x[], size_t nx) {
    if (nx != 1) return fmi2Error;
    ((Tank *)c)->r[LEVEL] = x[0]; update(c); return fmi2OK;
}
fmi2Status fmi2GetContinuousStates(fmi2Component c, fmi2Real x[], size_t nx) {
    if (nx != 1) return fmi2Error;
    x[0] = ((Tank *)c)->r[LEVEL]; return fmi2OK;
}
fmi2Status fmi2GetDerivatives(fmi2Component c, fmi2Real dx[], size_t nx) {
    if (nx != 1) return fmi2Error;
    update(c); dx[0] = ((Tank *)c)->r[DLEVEL]; return fmi2OK;
}
fmi2Status fmi2GetNominalsOfContinuousStates(fmi2Component c, fmi2Real nominal[], size_t nx) {
    (void)c;
    for (size_t i = 0; i < nx; i++) nominal[i] = 1.0;
    return fmi2OK;
}
fmi2Status fmi2GetEventIndicators(fmi2Component c, fmi2Real z[], size_t nz) {
    (void)c; (void)z; return nz == 0 ? fmi2OK : fmi2Error;
}

/* co-simulation */
fmi2Status fmi2DoStep(fmi2Component c, fmi2Real t, fmi2Real h, fmi2Boolean noPrior) {
    Tank *m = c;
    (void)noPrior;
    int n = (int)ceil(h / 1.0 - 1e-9);
    if (n < 1) n = 1;
    double dt = h / n, x = m->r[LEVEL];
    for (int i = 0; i < n; i++) {
        double k1 = slope(m, x), k2 = slope(m, x + dt / 2 * k1), k3 = slope(m, x + dt / 2 * k2);
        double k4 = slope(m, x + dt * k3);
        x += dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4);
        if (x < 0) x = 0;
    }
    m->r[LEVEL] = x;
    m->time = t + h;
    update(m);
    return fmi2OK;
}
