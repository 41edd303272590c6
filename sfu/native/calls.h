/* calls.h: calling a Python object's method from the compiled modules
 * (sfu.native._recv, sfu.native._ingress). Include after Python.h. A header beside the
 * sources is part of every module's freshness check (sfu/native/build.py `stale`). */
#ifndef VISITROOM_CALLS_H
#define VISITROOM_CALLS_H

/* obj.name(a), obj.name(a, b), obj.name(a, b, c): a new reference, or NULL with the
 * exception set. `name` is an interned str. */
static inline PyObject *
call1(PyObject *obj, PyObject *name, PyObject *a)
{
    PyObject *args[2] = {obj, a};
    return PyObject_VectorcallMethod(name, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static inline PyObject *
call2(PyObject *obj, PyObject *name, PyObject *a, PyObject *b)
{
    PyObject *args[3] = {obj, a, b};
    return PyObject_VectorcallMethod(name, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static inline PyObject *
call3(PyObject *obj, PyObject *name, PyObject *a, PyObject *b, PyObject *c)
{
    PyObject *args[4] = {obj, a, b, c};
    return PyObject_VectorcallMethod(name, args, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* A call whose result is not needed: 0, or -1 with the exception set. */
static inline int
done(PyObject *result)
{
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

#endif
