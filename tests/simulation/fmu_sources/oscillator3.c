/* A mass on a spring driven by a force, FMI 3.0, model exchange and co-simulation in one binary
   (a test model of Tvilling).

   der(x) = v,  der(v) = (F - k*x) / m;  the output is the position x.
   Value references: 0 time, 1 F (input), 2 x (output, state), 3 der(x), 4 v (state), 5 der(v), 6 k, 7 m.
   Co-simulation steps with the exact solution for a force held over the step. */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "fmi3Functions.h"

enum { TIME, F, X, DX, V, DV, K, M, NVARS };

typedef struct {
    double r[NVARS];
} Oscillator;

static void update(Oscillator *o) {
    o->r[DX] = o->r[V];
    o->r[DV] = (o->r[F] - o->r[K] * o->r[X]) / o->r[M];
}

const char *fmi3GetVersion(void) { return fmi3Version; }

static fmi3Instance create(fmi3String token) {
    if (strcmp(token, "{oscillator3-0001}") != 0) return NULL;
    Oscillator *o = calloc(1, sizeof(Oscillator));
    o->r[X] = 1.0; o->r[V] = 0.0; o->r[K] = 4.0; o->r[M] = 1.0;
    update(o);
    return o;
}

fmi3Instance fmi3InstantiateModelExchange(fmi3String name, fmi3String token, fmi3String resources,
                                          fmi3Boolean visible, fmi3Boolean logging,
                                          fmi3InstanceEnvironment env, fmi3LogMessageCallback log) {
    (void)name; (void)resources; (void)visible; (void)logging; (void)env; (void)log;
    return create(token);
}

fmi3Instance fmi3InstantiateCoSimulation(fmi3String name, fmi3String token, fmi3String resources,
                                         fmi3Boolean visible, fmi3Boolean logging, fmi3Boolean eventMode,
                                         fmi3Boolean earlyReturn, const fmi3ValueReference required[],
                                         size_t nRequired, fmi3InstanceEnvironment env,
                                         fmi3LogMessageCallback log, fmi3IntermediateUpdateCallback update) {
    (void)name; (void)resources; (void)visible; (void)logging; (void)eventMode; (void)earlyReturn;
    (void)required; (void)nRequired; (void)env; (void)log; (void)update;
    return create(token);
}

fmi3Instance fmi3InstantiateScheduledExecution(fmi3String name, fmi3String token, fmi3String resources,
                                               fmi3Boolean visible, fmi3Boolean logging,
                                               fmi3InstanceEnvironment env, fmi3LogMessageCallback log,
                                               fmi3ClockUpdateCallback clockUpdate,
                                               fmi3LockPreemptionCallback lock,
                                               fmi3UnlockPreemptionCallback unlock) {
    (void)name; (void)token; (void)resources; (void)visible; (void)logging; (void)env; (void)log;
    (void)clockUpdate; (void)lock; (void)unlock;
    return NULL;
}

void fmi3FreeInstance(fmi3Instance instance) { free(instance); }

fmi3Status fmi3SetDebugLogging(fmi3Instance instance, fmi3Boolean on, size_t n, const fmi3String categories[]) {
    (void)instance; (void)on; (void)n; (void)categories; return fmi3OK;
}

fmi3Status fmi3EnterInitializationMode(fmi3Instance instance, fmi3Boolean tolDefined, fmi3Float64 tol,
                                       fmi3Float64 start, fmi3Boolean stopDefined, fmi3Float64 stop) {
    (void)tolDefined; (void)tol; (void)stopDefined; (void)stop;
    ((Oscillator *)instance)->r[TIME] = start; return fmi3OK;
}
fmi3Status fmi3ExitInitializationMode(fmi3Instance instance) { update(instance); return fmi3OK; }
fmi3Status fmi3EnterEventMode(fmi3Instance instance) { (void)instance; return fmi3OK; }
fmi3Status fmi3Terminate(fmi3Instance instance) { (void)instance; return fmi3OK; }

fmi3Status fmi3GetFloat64(fmi3Instance instance, const fmi3ValueReference vr[], size_t n, fmi3Float64 values[],
                          size_t nValues) {
    Oscillator *o = instance;
    if (n != nValues) return fmi3Error;
    update(o);
    for (size_t i = 0; i < n; i++) {
        if (vr[i] >= NVARS) return fmi3Error;
        values[i] = o->r[vr[i]];
    }
    return fmi3OK;
}

fmi3Status fmi3SetFloat64(fmi3Instance instance, const fmi3ValueReference vr[], size_t n,
                          const fmi3Float64 values[], size_t nValues) {
    Oscillator *o = instance;
    if (n != nValues) return fmi3Error;
    for (size_t i = 0; i < n; i++) {
        if (vr[i] == TIME || vr[i] == DX || vr[i] == DV || vr[i] >= NVARS) return fmi3Error;
        if (vr[i] == M && values[i] <= 0) return fmi3Error;
        o->r[vr[i]] = values[i];
    }
    update(o);
    return fmi3OK;
}

fmi3Status fmi3UpdateDiscreteStates(fmi3Instance instance, fmi3Boolean *needUpdate, fmi3Boolean *terminate,
                                    fmi3Boolean *nominalsChanged, fmi3Boolean *valuesChanged,
                                    fmi3Boolean *nextTimeDefined, fmi3Float64 *nextTime) {
    (void)instance;
    *needUpdate = fmi3False; *terminate = fmi3False; *nominalsChanged = fmi3False; *valuesChanged = fmi3False;
    *nextTimeDefined = fmi3False; *nextTime = 0.0;
    return fmi3OK;
}

/* model exchange */
fmi3Status fmi3EnterContinuousTimeMode(fmi3Instance instance) { (void)instance; return fmi3OK; }
fmi3Status fmi3CompletedIntegratorStep(fmi3Instance instance, fmi3Boolean noPrior, fmi3Boolean *enterEvent,
                                       fmi3Boolean *terminate) {
    (void)instance; (void)noPrior; *enterEvent = fmi3False; *terminate = fmi3False; return fmi3OK;
}
fmi3Status fmi3SetTime(fmi3Instance instance, fmi3Float64 time) {
    ((Oscillator *)instance)->r[TIME] = time; return fmi3OK;
}
fmi3Status fmi3SetContinuousStates(fmi3Instance instance, const fmi3Float64 x[], size_t nx) {
    Oscillator *o = instance;
    if (nx != 2) return fmi3Error;
    o->r[X] = x[0]; o->r[V] = x[1]; update(o); return fmi3OK;
}
fmi3Status fmi3GetContinuousStates(fmi3Instance instance, fmi3Float64 x[], size_t nx) {
    Oscillator *o = instance;
    if (nx != 2) return fmi3Error;
    x[0] = o->r[X]; x[1] = o->r[V]; return fmi3OK;
}
fmi3Status fmi3GetContinuousStateDerivatives(fmi3Instance instance, fmi3Float64 dx[], size_t nx) {
    Oscillator *o = instance;
    if (nx != 2) return fmi3Error;
    update(o); dx[0] = o->r[DX]; dx[1] = o->r[DV]; return fmi3OK;
}
fmi3Status fmi3GetNominalsOfContinuousStates(fmi3Instance instance, fmi3Float64 nominals[], size_t nx) {
    (void)instance;
    for (size_t i = 0; i < nx; i++) nominals[i] = 1.0;
    return fmi3OK;
}
fmi3Status fmi3GetEventIndicators(fmi3Instance instance, fmi3Float64 z[], size_t nz) {
    (void)instance; (void)z; return nz == 0 ? fmi3OK : fmi3Error;
}
fmi3Status fmi3GetNumberOfEventIndicators(fmi3Instance instance, size_t *nz) {
    (void)instance; *nz = 0; return fmi3OK;
}
fmi3Status fmi3GetNumberOfContinuousStates(fmi3Instance instance, size_t *nx) {
    (void)instance; *nx = 2; return fmi3OK;
}

/* co-simulation */
fmi3Status fmi3EnterStepMode(fmi3Instance instance) { (void)instance; return fmi3OK; }
fmi3Status fmi3DoStep(fmi3Instance instance, fmi3Float64 t, fmi3Float64 h, fmi3Boolean noPrior,
                      fmi3Boolean *eventHandlingNeeded, fmi3Boolean *terminate, fmi3Boolean *earlyReturn,
                      fmi3Float64 *lastSuccessfulTime) {
    Oscillator *o = instance;
    (void)noPrior;
    double w = sqrt(o->r[K] / o->r[M]);
    double rest = o->r[F] / o->r[K];
    double dx = o->r[X] - rest, v = o->r[V];
    o->r[X] = rest + dx * cos(w * h) + v / w * sin(w * h);
    o->r[V] = -dx * w * sin(w * h) + v * cos(w * h);
    o->r[TIME] = t + h;
    update(o);
    *eventHandlingNeeded = fmi3False; *terminate = fmi3False; *earlyReturn = fmi3False;
    *lastSuccessfulTime = t + h;
    return fmi3OK;
}
