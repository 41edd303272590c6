/* sfu.native._stats: the per-packet part of a stream's receive statistics, in C (issue 16).
 *
 * ReceiveCore is the compiled twin of sfu.packet.streamstats.ReceiveCorePython:
 * the RFC 3550 counters of one incoming stream that every received packet
 * updates (`add`), with the same attributes (_clock_rate, _base, max_seq,
 * received, bytes, _jitter, _transit) and exactly the same values: the
 * jitter is computed with the same double operations in the same order
 * (the build's -ffp-contract=off keeps them unfused), held to it by
 * tests/test_native_stats.py.  sfu.packet.streamstats.ReceiveStats subclasses
 * it and adds the reports in Python.
 *
 * The integers are 64-bit here: an extended sequence number or a byte count
 * that does not fit raises OverflowError (a stream would need centuries of
 * packets to get there; the Python twin has no such bound).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <math.h>

typedef struct {
    PyObject_HEAD
    long long clock_rate;
    long long base;
    long long max_seq;
    long long received;
    long long bytes;
    double jitter;
    double transit;
    int has_transit;
} ReceiveCore;

static int
core_init(ReceiveCore *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"clock_rate", NULL};
    long long clock_rate;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "L", keywords, &clock_rate))
        return -1;
    self->clock_rate = clock_rate;
    self->base = -1;
    self->max_seq = -1;
    self->received = 0;
    self->bytes = 0;
    self->jitter = 0.0;
    self->transit = 0.0;
    self->has_transit = 0;
    return 0;
}

/* add(ext_seq, timestamp, size, now): one packet of the stream arrived. */
static PyObject *
core_add(ReceiveCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "add(ext_seq, timestamp, size, now)");
        return NULL;
    }
    long long ext_seq = PyLong_AsLongLong(args[0]);
    if (ext_seq == -1 && PyErr_Occurred())
        return NULL;
    long long timestamp = PyLong_AsLongLong(args[1]);
    if (timestamp == -1 && PyErr_Occurred())
        return NULL;
    long long size = PyLong_AsLongLong(args[2]);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    double now = PyFloat_AsDouble(args[3]);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    if (self->received == LLONG_MAX || (size > 0 && self->bytes > LLONG_MAX - size) ||
        (size < 0 && self->bytes < LLONG_MIN - size)) {
        PyErr_SetString(PyExc_OverflowError, "receive statistics out of range");
        return NULL;
    }
    if (self->base < 0) {
        self->base = ext_seq;
        self->max_seq = ext_seq;
    }
    else if (ext_seq > self->max_seq)
        self->max_seq = ext_seq;
    self->received += 1;
    self->bytes += size;
    /* As Python: float * int, then - int, each rounded once. */
    double transit = now * (double)self->clock_rate;
    transit = transit - (double)timestamp;
    int had = self->has_transit;
    double last = self->transit;
    self->transit = transit;
    self->has_transit = 1;
    if (had) {
        double d = fabs(transit - last);
        /* A timestamp wrap or a new stream would look like a huge jitter. */
        if (d < (double)(self->clock_rate * 10))
            self->jitter += (d - self->jitter) / 16.0;
    }
    Py_RETURN_NONE;
}

static PyObject *
core_get_transit(ReceiveCore *self, void *closure)
{
    if (!self->has_transit)
        Py_RETURN_NONE;
    return PyFloat_FromDouble(self->transit);
}

static int
core_set_transit(ReceiveCore *self, PyObject *value, void *closure)
{
    if (value == NULL || value == Py_None) {
        self->has_transit = 0;
        return 0;
    }
    double transit = PyFloat_AsDouble(value);
    if (transit == -1.0 && PyErr_Occurred())
        return -1;
    self->transit = transit;
    self->has_transit = 1;
    return 0;
}

static PyMethodDef core_methods[] = {
    {"add", (PyCFunction)(void (*)(void))core_add, METH_FASTCALL,
     "add(ext_seq, timestamp, size, now): one packet arrived"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef core_members[] = {
    {"_clock_rate", T_LONGLONG, offsetof(ReceiveCore, clock_rate), READONLY, NULL},
    {"_base", T_LONGLONG, offsetof(ReceiveCore, base), 0, NULL},
    {"max_seq", T_LONGLONG, offsetof(ReceiveCore, max_seq), 0, NULL},
    {"received", T_LONGLONG, offsetof(ReceiveCore, received), 0, NULL},
    {"bytes", T_LONGLONG, offsetof(ReceiveCore, bytes), 0, NULL},
    {"_jitter", T_DOUBLE, offsetof(ReceiveCore, jitter), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef core_getset[] = {
    {"_transit", (getter)core_get_transit, (setter)core_set_transit, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ReceiveCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu.native._stats.ReceiveCore",
    .tp_basicsize = sizeof(ReceiveCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "ReceiveCore(clock_rate): a stream's per-packet receive counters (see _stats.c)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)core_init,
    .tp_methods = core_methods,
    .tp_members = core_members,
    .tp_getset = core_getset,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "sfu.native._stats",
    "A stream's per-packet receive counters (see _stats.c).", -1, NULL,
};

PyMODINIT_FUNC
PyInit__stats(void)
{
    if (PyType_Ready(&ReceiveCoreType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "ReceiveCore", (PyObject *)&ReceiveCoreType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
