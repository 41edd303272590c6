/* slots.h: for the compiled modules that read and write Python objects' __slots__
 * fields in place (sfu.native._fanout, sfu.native._recv). Include after Python.h and
 * structmember.h. A header beside the sources is part of every module's freshness
 * check (sfu/native/build.py `stale`). */
#ifndef VISITROOM_SLOTS_H
#define VISITROOM_SLOTS_H

/* The byte offsets of `n` fields `names` of class `cls` into `offsets` (room for
 * `capacity`); each must be an object __slots__ field (T_OBJECT_EX), or this is -1 with
 * a TypeError and `offsets` is left as it was. */
static int
slot_offsets(PyObject *cls, const char **names, int n, Py_ssize_t *offsets, int capacity)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "configure wants a class");
        return -1;
    }
    Py_ssize_t found[64];
    if (n < 0 || n > capacity || n > 64) {
        PyErr_SetString(PyExc_ValueError, "more fields than the table holds");
        return -1;
    }
    for (int k = 0; k < n; k++) {
        PyObject *descr = PyObject_GetAttrString(cls, names[k]);
        if (descr == NULL)
            return -1;
        int ok = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX;
        if (ok)
            found[k] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%s is not a __slots__ field", names[k]);
            return -1;
        }
    }
    memcpy(offsets, found, sizeof(Py_ssize_t) * (size_t)n);
    return 0;
}

#endif
