/* A first-order lag, FMI 2.0, model exchange and co-simulation in one binary (a test model of Tvilling).

   der(x) = (K*u - x) / T,  y = x.
   Value references: 0 u (input), 1 y (output), 2 K, 3 T (parameters), 4 x (state), 5 der(x).
   Co-simulation steps with the exact solution for an input held over the step. */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "fmi2Functions.h"

enum { U, Y, K, T, X, DX, NVARS };

typedef struct {
    double r[NVARS];
    double time;
} Lag;

static void update(Lag *m) {
    m->r[Y] = m->r[X];
    m->r[DX] = (m->r[K] * m->r[U] - m->r[X]) / m->r[T];
}

const char *fmi2GetTypesPlatform(void) { return fmi2TypesPlatform; }
const char *fmi2GetVersion(void) { return fmi2Version; }

fmi2Component fmi2Instantiate(fmi2String name, fmi2Type type, fmi2String guid, fmi2String resources,
                              const fmi2CallbackFunctions *functions, fmi2Boolean visible, fmi2Boolean logging) {
    (void)name; (void)type; (void)resources; (void)functions; (void)visible; (void)logging;
    if (strcmp(guid, "{lag2-0001}") != 0) return NULL;
    Lag *m = calloc(1, sizeof(Lag));
    m->r[K] = 2.0; m->r[T] = 0.5; m->r[X] = 0.0; m->r[U] = 0.0;
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
    ((Lag *)c)->time = start; return fmi2OK;
}

fmi2Status fmi2EnterInitializationMode(fmi2Component c) { (void)c; return fmi2OK; }
fmi2Status fmi2ExitInitializationMode(fmi2Component c) { update((Lag *)c); return fmi2OK; }
fmi2Status fmi2Terminate(fmi2Component c) { (void)c; return fmi2OK; }

fmi2Status fmi2GetReal(fmi2Component c, const fmi2ValueReference vr[], size_t n, fmi2Real value[]) {
    Lag *m = c;
    update(m);
    for (size_t i = 0; i < n; i++) {
        if (vr[i] >= NVARS) return fmi2Error;
        value[i] = m->r[vr[i]];
    }
    return fmi2OK;
}

fmi2Status fmi2SetReal(fmi2Component c, const fmi2ValueReference vr[], size_t n, const fmi2Real value[]) {
    Lag *m = c;
    for (size_t i = 0; i < n; i++) {
        if (vr[i] == Y || vr[i] == DX || vr[i] >= NVARS) return fmi2Error;
        if (vr[i] == T && value[i] <= 0) return fmi2Error;
        m->r[vr[i]] = value[i];
    }
    update(m);
    return fmi2OK;
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
fmi2Status fmi2SetTime(fmi2Component c, fmi2Real time) { ((Lag *)c)->time = time; return fmi2OK; }
fmi2Status fmi2SetContinuousStates(fmi2Component c, const fmi2Real x[], size_t nx) {
    if (nx != 1) return fmi2Error;
    ((Lag *)c)->r[X] = x[0]; update(c); return fmi2OK;
}
fmi2Status fmi2GetContinuousStates(fmi2Component c, fmi2Real x[], size_t nx) {
    if (nx != 1) return fmi2Error;
    x[0] = ((Lag *)c)->r[X]; return fmi2OK;
}
fmi2Status fmi2GetDerivatives(fmi2Component c, fmi2Real dx[], size_t nx) {
    if (nx != 1) return fmi2Error;
    update(c); dx[0] = ((Lag *)c)->r[DX]; return fmi2OK;
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
    Lag *m = c;
    (void)noPrior;
    double target = m->r[K] * m->r[U];
    m->r[X] = target + (m->r[X] - target) * exp(-h / m->r[T]);
    m->time = t + h;
    update(m);
    return fmi2OK;
}
