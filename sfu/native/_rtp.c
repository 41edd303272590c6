/* sfu.native._rtp: the receive path's per-packet parsing in C (issue 16).
 *
 * Each function is the twin of one Python function, with the same results,
 * the same exceptions and the same messages (tests/test_native_rtp.py holds
 * them to it, hypothesis included):
 *
 *   parse_rtp(data, max_size=1500) -> RtpHeader   sfu.packet.rtp.parse_rtp
 *   find_extension(data, profile, start, length, ext_id) -> bytes | None
 *                                                 sfu.packet.rtp.find_extension
 *   element_value(data, profile, start, end, ext_id) -> int
 *                                                 sfu.packet.twcc._element_value
 *   parse_vp8(payload) -> Vp8Descriptor           sfu.packet.vp8.parse_vp8
 *   read_vp8_at(data, offset, length) -> Vp8Descriptor | None
 *                                                 sfu.packet.vp8.read_vp8_at
 *   SeqUnwrapper().unwrap(seq) -> int            sfu.packet.rtp.SeqUnwrapperPython
 *   unprotect(owner, function, context, max_size, data) -> bytes | None
 *                        sfu.transport.srtp.InboundSrtp.unprotect_python
 *
 * `unprotect` calls libsrtp's srtp_unprotect at the address sfu.transport.srtp
 * hands over (the library it loaded with cffi and checked against pylibsrtp;
 * libsrtp is not linked here), on a new bytes object: one copy, one call.
 *
 * The result objects are the Python classes themselves, handed over once by
 * `bind_rtp(RtpHeader, RtpError)` and `bind_vp8(Vp8Descriptor, Vp8Error)`
 * (sfu.packet.rtp and sfu.packet.vp8 do it on import): RtpHeader is a
 * frozen dataclass with __slots__, filled here through its slots' offsets
 * (checked at bind: each field must be an object slot of that class), as
 * its own frozen __init__ would fill them; Vp8Descriptor is a NamedTuple,
 * a tuple subclass built as tuple.__new__ builds one.
 *
 * Hostile input: every offset is checked against the buffer's length before
 * it is read; nothing is ever written to a caller's buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define ONE_BYTE_PROFILE 0xBEDE
#include "rtpext.h"

static PyTypeObject *header_type;   /* sfu.packet.rtp.RtpHeader */
static PyTypeObject *vp8_type;      /* sfu.packet.vp8.Vp8Descriptor */
static PyObject *rtp_error;         /* sfu.packet.rtp.RtpError */
static PyObject *vp8_error;         /* sfu.packet.vp8.Vp8Error */

#define HEADER_FIELDS 12
static const char *header_names[HEADER_FIELDS] = {
    "marker", "payload_type", "sequence", "timestamp", "ssrc", "csrc_count",
    "ext_profile", "ext_offset", "ext_length", "payload_offset", "payload_length",
    "padding_length",
};
static Py_ssize_t header_offsets[HEADER_FIELDS];

#define VP8_FIELDS 14
static const char *vp8_names[VP8_FIELDS] = {
    "start", "partition", "non_reference", "picture_id", "picture_id_bits", "tl0picidx",
    "tid", "sync", "keyidx", "header_size", "keyframe", "picture_id_offset",
    "tl0picidx_offset", "tk_offset",
};

/* A read-only view of bytes, bytearray or memoryview. */
typedef struct {
    const unsigned char *p;
    Py_ssize_t n;
    Py_buffer view;
    int has_view;
} input;

static int
input_get(PyObject *obj, input *in)
{
    if (PyBytes_CheckExact(obj)) {
        in->p = (const unsigned char *)PyBytes_AS_STRING(obj);
        in->n = PyBytes_GET_SIZE(obj);
        in->has_view = 0;
        return 0;
    }
    if (PyObject_GetBuffer(obj, &in->view, PyBUF_SIMPLE) < 0)
        return -1;
    in->p = (const unsigned char *)in->view.buf;
    in->n = in->view.len;
    in->has_view = 1;
    return 0;
}

static void
input_release(input *in)
{
    if (in->has_view)
        PyBuffer_Release(&in->view);
}

static int
not_bound(void *type, const char *which)
{
    if (type == NULL) {
        PyErr_Format(PyExc_RuntimeError, "sfu.native._rtp: %s() was not called", which);
        return 1;
    }
    return 0;
}

/* bind_rtp(RtpHeader, RtpError), bind_vp8(Vp8Descriptor, Vp8Error) */

static int
check_header_type(PyTypeObject *type)
{
    if (type->tp_itemsize != 0) {
        PyErr_SetString(PyExc_TypeError, "RtpHeader: a fixed-size class is expected");
        return -1;
    }
    for (int i = 0; i < HEADER_FIELDS; i++) {
        PyObject *descr = PyDict_GetItemString(type->tp_dict, header_names[i]);
        if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "RtpHeader.%s is not a slot", header_names[i]);
            return -1;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX || member->offset < (Py_ssize_t)sizeof(PyObject) ||
            member->offset + (Py_ssize_t)sizeof(PyObject *) > type->tp_basicsize) {
            PyErr_Format(PyExc_TypeError, "RtpHeader.%s is not an object slot",
                         header_names[i]);
            return -1;
        }
        header_offsets[i] = member->offset;
    }
    return 0;
}

static int
check_vp8_type(PyTypeObject *type)
{
    if (!PyType_IsSubtype(type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "Vp8Descriptor: a tuple subclass is expected");
        return -1;
    }
    PyObject *fields = PyObject_GetAttrString((PyObject *)type, "_fields");
    if (fields == NULL)
        return -1;
    int ok = PyTuple_Check(fields) && PyTuple_GET_SIZE(fields) == VP8_FIELDS;
    for (int i = 0; ok && i < VP8_FIELDS; i++) {
        PyObject *name = PyTuple_GET_ITEM(fields, i);
        ok = PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, vp8_names[i]) == 0;
    }
    Py_DECREF(fields);
    if (!ok) {
        PyErr_SetString(PyExc_TypeError, "Vp8Descriptor: unexpected fields");
        return -1;
    }
    return 0;
}

static PyObject *
bind_rtp(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyType_Check(args[0]) || !PyExceptionClass_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "bind_rtp(RtpHeader, RtpError) expected");
        return NULL;
    }
    if (check_header_type((PyTypeObject *)args[0]) < 0)
        return NULL;
    Py_XSETREF(header_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(rtp_error, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

static PyObject *
bind_vp8(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyType_Check(args[0]) || !PyExceptionClass_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "bind_vp8(Vp8Descriptor, Vp8Error) expected");
        return NULL;
    }
    if (check_vp8_type((PyTypeObject *)args[0]) < 0)
        return NULL;
    Py_XSETREF(vp8_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(vp8_error, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

/* parse_rtp */

static PyObject *
new_header(PyObject **values)
{
    /* Consumes the references in values (all non-NULL). */
    PyObject *h = header_type->tp_alloc(header_type, 0);
    if (h == NULL) {
        for (int i = 0; i < HEADER_FIELDS; i++)
            Py_DECREF(values[i]);
        return NULL;
    }
    for (int i = 0; i < HEADER_FIELDS; i++)
        *(PyObject **)((char *)h + header_offsets[i]) = values[i];
    return h;
}

static PyObject *
header_from(int marker, long pt, long sequence, unsigned long timestamp, unsigned long ssrc,
            long csrc_count, long ext_profile, Py_ssize_t ext_offset, Py_ssize_t ext_length,
            Py_ssize_t payload_offset, Py_ssize_t payload_length, long padding)
{
    PyObject *v[HEADER_FIELDS];
    v[0] = PyBool_FromLong(marker);
    v[1] = PyLong_FromLong(pt);
    v[2] = PyLong_FromLong(sequence);
    v[3] = PyLong_FromUnsignedLong(timestamp);
    v[4] = PyLong_FromUnsignedLong(ssrc);
    v[5] = PyLong_FromLong(csrc_count);
    v[6] = ext_profile < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(ext_profile);
    v[7] = PyLong_FromSsize_t(ext_offset);
    v[8] = PyLong_FromSsize_t(ext_length);
    v[9] = PyLong_FromSsize_t(payload_offset);
    v[10] = PyLong_FromSsize_t(payload_length);
    v[11] = PyLong_FromLong(padding);
    for (int i = 0; i < HEADER_FIELDS; i++) {
        if (v[i] == NULL) {
            for (int j = 0; j < HEADER_FIELDS; j++)
                Py_XDECREF(v[j]);
            return NULL;
        }
    }
    return new_header(v);
}

static PyObject *
parse(const unsigned char *p, Py_ssize_t size, Py_ssize_t max_size)
{
    if (size < 12)
        return PyErr_Format(rtp_error, "RTP packet of %zd bytes is shorter than the fixed header",
                            size);
    if (size > max_size)
        return PyErr_Format(rtp_error, "RTP packet of %zd bytes exceeds %zd", size, max_size);
    int b0 = p[0], b1 = p[1];
    if (b0 >> 6 != 2)
        return PyErr_Format(rtp_error, "RTP version %d, expected 2", b0 >> 6);
    long csrc_count = b0 & 0x0F;
    Py_ssize_t offset = 12 + 4 * csrc_count;
    if (offset > size)
        return PyErr_Format(rtp_error, "%ld CSRCs run past the end of a %zd-byte packet",
                            csrc_count, size);
    long ext_profile = -1;
    Py_ssize_t ext_offset = 0, ext_length = 0;
    if (b0 & 0x10) {
        if (offset + 4 > size)
            return PyErr_Format(rtp_error,
                                "header extension header runs past the end of the packet");
        ext_profile = (p[offset] << 8) | p[offset + 1];
        ext_offset = offset + 4;
        ext_length = 4 * (Py_ssize_t)((p[offset + 2] << 8) | p[offset + 3]);
        offset = ext_offset + ext_length;
        if (offset > size)
            return PyErr_Format(rtp_error, "header extension of %zd bytes runs past the end",
                                ext_length);
    }
    long padding = 0;
    if (b0 & 0x20) {
        padding = p[size - 1];
        if (padding == 0 || padding > size - offset)
            return PyErr_Format(rtp_error, "padding count %ld with %zd bytes after the header",
                                padding, size - offset);
    }
    unsigned long sequence = ((unsigned long)p[2] << 8) | p[3];
    unsigned long timestamp = ((unsigned long)p[4] << 24) | ((unsigned long)p[5] << 16) |
                              ((unsigned long)p[6] << 8) | p[7];
    unsigned long ssrc = ((unsigned long)p[8] << 24) | ((unsigned long)p[9] << 16) |
                         ((unsigned long)p[10] << 8) | p[11];
    return header_from(b1 & 0x80, b1 & 0x7F, (long)sequence, timestamp, ssrc, csrc_count,
                       ext_profile, ext_offset, ext_length, offset, size - offset - padding,
                       padding);
}

static PyObject *
parse_rtp(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (not_bound(header_type, "bind_rtp"))
        return NULL;
    /* (data, max_size=1500), either one by keyword too, as the Python twin. */
    PyObject *data = nargs > 0 ? args[0] : NULL, *limit = nargs > 1 ? args[1] : NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    int bad = nargs > 2;
    for (Py_ssize_t k = 0; k < nkw && !bad; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        PyObject **slot = NULL;
        if (PyUnicode_CompareWithASCIIString(name, "data") == 0)
            slot = &data;
        else if (PyUnicode_CompareWithASCIIString(name, "max_size") == 0)
            slot = &limit;
        bad = slot == NULL || *slot != NULL;
        if (!bad)
            *slot = args[nargs + k];
    }
    if (bad || data == NULL) {
        PyErr_SetString(PyExc_TypeError, "parse_rtp(data, max_size=1500)");
        return NULL;
    }
    Py_ssize_t max_size = 1500;
    if (limit != NULL) {
        max_size = PyNumber_AsSsize_t(limit, PyExc_OverflowError);
        if (max_size == -1 && PyErr_Occurred())
            return NULL;
    }
    input in;
    if (input_get(data, &in) < 0)
        return NULL;
    PyObject *out = parse(in.p, in.n, max_size);
    input_release(&in);
    return out;
}

/* Header extension elements (RFC 8285). */

static int
ssize_arg(PyObject *arg, Py_ssize_t *out)
{
    *out = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* find_extension(data, profile, start, length, ext_id): the element's value or None.
 * As the Python twin: the one-byte form stops at the first match; the
 * two-byte form checks the whole block before answering. */
static PyObject *
find_in(const unsigned char *p, Py_ssize_t n, long profile, Py_ssize_t i, Py_ssize_t length,
        long ext_id)
{
    Py_ssize_t end = i + length;
    if (end > n)
        return PyErr_Format(rtp_error, "header does not match the packet");
    if (i < 0 || length < 0)
        return PyErr_Format(PyExc_ValueError, "negative extension offset or length");
    if (profile == ONE_BYTE_PROFILE) {
        while (i < end) {
            int b = p[i];
            if (b == 0) {
                i += 1;
                continue;
            }
            int found = b >> 4;
            if (found == 15 || found == 0)
                Py_RETURN_NONE;
            Py_ssize_t stop = i + 2 + (b & 0x0F);
            if (stop > end)
                return PyErr_Format(rtp_error, "extension id %d runs past the block", found);
            if (found == ext_id)
                return PyBytes_FromStringAndSize((const char *)p + i + 1, stop - i - 1);
            i = stop;
        }
        Py_RETURN_NONE;
    }
    if ((profile & 0xFFF0) == 0x1000) {
        Py_ssize_t match = -1, match_length = 0;
        while (i < end) {
            int found = p[i];
            if (found == 0) {
                i += 1;
                continue;
            }
            if (i + 2 > end)
                return PyErr_Format(rtp_error, "two-byte extension id %d is missing its length",
                                    found);
            int size = p[i + 1];
            if (i + 2 + size > end)
                return PyErr_Format(rtp_error, "extension id %d of %d bytes runs past the block",
                                    found, size);
            if (found == ext_id && match < 0) {
                match = i + 2;
                match_length = size;
            }
            i += 2 + size;
        }
        if (match >= 0)
            return PyBytes_FromStringAndSize((const char *)p + match, match_length);
    }
    Py_RETURN_NONE;
}

static PyObject *
find_extension(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (not_bound(header_type, "bind_rtp"))
        return NULL;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "find_extension(data, profile, start, length, ext_id)");
        return NULL;
    }
    Py_ssize_t profile, start, length, ext_id;
    if (ssize_arg(args[1], &profile) < 0 || ssize_arg(args[2], &start) < 0 ||
        ssize_arg(args[3], &length) < 0 || ssize_arg(args[4], &ext_id) < 0)
        return NULL;
    input in;
    if (input_get(args[0], &in) < 0)
        return NULL;
    PyObject *out = find_in(in.p, in.n, (long)profile, start, length, (long)ext_id);
    input_release(&in);
    return out;
}

/* element_value(data, profile, start, end, ext_id): offset of a 2-byte value or -1
 * (element_in: rtpext.h). */
static PyObject *
element_value(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "element_value(data, profile, start, end, ext_id)");
        return NULL;
    }
    Py_ssize_t profile, start, end, ext_id;
    if (ssize_arg(args[1], &profile) < 0 || ssize_arg(args[2], &start) < 0 ||
        ssize_arg(args[3], &end) < 0 || ssize_arg(args[4], &ext_id) < 0)
        return NULL;
    input in;
    if (input_get(args[0], &in) < 0)
        return NULL;
    Py_ssize_t at = element_in(in.p, in.n, (long)profile, start, end, (long)ext_id);
    input_release(&in);
    return PyLong_FromSsize_t(at);
}

/* VP8 payload descriptor (RFC 7741) */

static PyObject *
new_vp8(int start, long partition, int non_reference, long picture_id, long bits, long tl0,
        long tid, int sync, long keyidx, Py_ssize_t header_size, int keyframe, long pid_at,
        long tl0_at, long tk_at)
{
    PyObject *v[VP8_FIELDS];
    v[0] = PyBool_FromLong(start);
    v[1] = PyLong_FromLong(partition);
    v[2] = PyBool_FromLong(non_reference);
    v[3] = PyLong_FromLong(picture_id);
    v[4] = PyLong_FromLong(bits);
    v[5] = PyLong_FromLong(tl0);
    v[6] = PyLong_FromLong(tid);
    v[7] = PyBool_FromLong(sync);
    v[8] = PyLong_FromLong(keyidx);
    v[9] = PyLong_FromSsize_t(header_size);
    v[10] = PyBool_FromLong(keyframe);
    v[11] = PyLong_FromLong(pid_at);
    v[12] = PyLong_FromLong(tl0_at);
    v[13] = PyLong_FromLong(tk_at);
    PyObject *d = NULL;
    for (int i = 0; i < VP8_FIELDS; i++)
        if (v[i] == NULL)
            goto fail;
    d = vp8_type->tp_alloc(vp8_type, VP8_FIELDS);
    if (d == NULL)
        goto fail;
    for (int i = 0; i < VP8_FIELDS; i++)
        PyTuple_SET_ITEM(d, i, v[i]);
    return d;
fail:
    for (int i = 0; i < VP8_FIELDS; i++)
        Py_XDECREF(v[i]);
    return NULL;
}

/* The descriptor at p[0:n]; NULL with Vp8Error set (as parse_vp8) when incomplete. */
static PyObject *
vp8(const unsigned char *p, Py_ssize_t n)
{
    if (n == 0)
        return PyErr_Format(vp8_error, "empty VP8 payload");
    int b = p[0];
    long pid = -1, bits = 0, tl0 = -1, tid = -1, keyidx = -1;
    long pid_at = -1, tl0_at = -1, tk_at = -1;
    int sync = 0;
    Py_ssize_t i = 1;
    if (b & 0x80) {
        if (n < 2)
            return PyErr_Format(vp8_error, "VP8 descriptor truncated: no extension byte");
        int x = p[1];
        i = 2;
        if (x & 0x80) {
            if (i >= n)
                return PyErr_Format(vp8_error, "VP8 descriptor truncated: no picture id");
            pid_at = (long)i;
            int m = p[i];
            if (m & 0x80) {
                if (i + 1 >= n)
                    return PyErr_Format(vp8_error, "VP8 descriptor truncated: 15-bit picture id");
                pid = ((m & 0x7F) << 8) | p[i + 1];
                bits = 15;
                i += 2;
            }
            else {
                pid = m;
                bits = 7;
                i += 1;
            }
        }
        if (x & 0x40) {
            if (i >= n)
                return PyErr_Format(vp8_error, "VP8 descriptor truncated: no TL0PICIDX");
            tl0_at = (long)i;
            tl0 = p[i];
            i += 1;
        }
        if (x & 0x30) {
            if (i >= n)
                return PyErr_Format(vp8_error, "VP8 descriptor truncated: no TID/KEYIDX byte");
            tk_at = (long)i;
            int t = p[i];
            if (x & 0x20) {
                tid = t >> 6;
                sync = (t & 0x20) != 0;
            }
            if (x & 0x10)
                keyidx = t & 0x1F;
            i += 1;
        }
    }
    int start = (b & 0x10) != 0;
    long part = b & 0x07;
    int key = start && part == 0 && i < n && !(p[i] & 0x01);
    return new_vp8(start, part, (b & 0x20) != 0, pid, bits, tl0, tid, sync, keyidx, i, key,
                   pid_at, tl0_at, tk_at);
}

static PyObject *
parse_vp8(PyObject *module, PyObject *arg)
{
    if (not_bound(vp8_type, "bind_vp8"))
        return NULL;
    input in;
    if (input_get(arg, &in) < 0)
        return NULL;
    PyObject *out = vp8(in.p, in.n);
    input_release(&in);
    return out;
}

/* read_vp8_at(data, offset, length): the descriptor of data[offset:offset+length], or None. */
static PyObject *
read_vp8_at(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (not_bound(vp8_type, "bind_vp8"))
        return NULL;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "read_vp8_at(data, offset, length)");
        return NULL;
    }
    Py_ssize_t offset, length;
    if (ssize_arg(args[1], &offset) < 0 || ssize_arg(args[2], &length) < 0)
        return NULL;
    input in;
    if (input_get(args[0], &in) < 0)
        return NULL;
    PyObject *out;
    if (offset < 0 || length < 0 || offset > in.n || length > in.n - offset) {
        out = PyErr_Format(PyExc_ValueError, "payload [%zd, +%zd) outside a %zd-byte packet",
                           offset, length, in.n);
    }
    else {
        out = vp8(in.p + offset, length);
        if (out == NULL && PyErr_ExceptionMatches(vp8_error)) {
            PyErr_Clear();
            out = Py_NewRef(Py_None);
        }
    }
    input_release(&in);
    return out;
}

/* SRTP unprotect (libsrtp's srtp_unprotect, at an address sfu.transport.srtp gives). */

typedef int (*unprotect_fn)(void *ctx, void *srtp_hdr, int *len_ptr);

/* unprotect(owner, function, context, max_size, data): the plain packet, or None when
 * libsrtp refuses it or it is shorter than an RTP header or over max_size.
 * The datagram is copied into a new bytes object (never shared: at least 12
 * bytes), decrypted there in place and cut to the plain length.  `owner` is
 * not used: it is whatever keeps the session at `context` alive (a bound
 * partial of this function holds it, so the session outlives the partial). */
static PyObject *
unprotect(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "unprotect(owner, function, context, max_size, data)");
        return NULL;
    }
    args += 1; /* the owner */
    unprotect_fn function = (unprotect_fn)PyLong_AsVoidPtr(args[0]);
    void *context = PyLong_AsVoidPtr(args[1]);
    if (function == NULL || context == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "unprotect: NULL function or context");
        return NULL;
    }
    Py_ssize_t max_size;
    if (ssize_arg(args[2], &max_size) < 0)
        return NULL;
    if (!PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "unprotect: data must be bytes");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[3]);
    if (size < 12 || size > max_size || size > 0xFFFF)
        Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(PyBytes_AS_STRING(args[3]), size);
    if (out == NULL)
        return NULL;
    int length = (int)size;
    if (function(context, PyBytes_AS_STRING(out), &length) != 0 || length < 0 ||
        length > size) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    if (length < size && _PyBytes_Resize(&out, length) < 0)
        return NULL;
    return out;
}

/* SeqUnwrapper: 16-bit sequence numbers extended across wraps. */

typedef struct {
    PyObject_HEAD
    long long last;
    long long ext;
} Unwrapper;

static int
unwrapper_init(Unwrapper *self, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "SeqUnwrapper() takes no arguments");
        return -1;
    }
    self->last = -1;
    self->ext = 0;
    return 0;
}

/* unwrap(seq): as sfu.packet.rtp.SeqUnwrapperPython.unwrap, on 64-bit integers. */
static PyObject *
unwrapper_unwrap(Unwrapper *self, PyObject *arg)
{
    long long seq = PyLong_AsLongLong(arg);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    if (self->last < 0) {
        self->last = seq;
        self->ext = seq;
        return PyLong_FromLongLong(seq);
    }
    /* (seq - last) & 0xFFFF, as Python's & on a negative difference. */
    long long delta = (long long)((unsigned long long)seq - (unsigned long long)self->last) & 0xFFFF;
    if (delta >= 0x8000) {
        if (self->ext < LLONG_MIN + 0x10000)
            goto overflow;
        return PyLong_FromLongLong(self->ext + delta - 0x10000);
    }
    if (self->ext > LLONG_MAX - delta)
        goto overflow;
    self->ext += delta;
    self->last = seq;
    return PyLong_FromLongLong(self->ext);
overflow:
    PyErr_SetString(PyExc_OverflowError, "extended sequence number out of range");
    return NULL;
}

static PyMethodDef unwrapper_methods[] = {
    {"unwrap", (PyCFunction)unwrapper_unwrap, METH_O, "unwrap(seq) -> extended sequence number"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef unwrapper_members[] = {
    {"_last", T_LONGLONG, offsetof(Unwrapper, last), 0, NULL},
    {"_ext", T_LONGLONG, offsetof(Unwrapper, ext), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject UnwrapperType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu.native._rtp.SeqUnwrapper",
    .tp_basicsize = sizeof(Unwrapper),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SeqUnwrapper(): sfu.packet.rtp.SeqUnwrapperPython's twin",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)unwrapper_init,
    .tp_methods = unwrapper_methods,
    .tp_members = unwrapper_members,
};

static PyMethodDef methods[] = {
    {"bind_rtp", (PyCFunction)(void (*)(void))bind_rtp, METH_FASTCALL,
     "bind_rtp(RtpHeader, RtpError): the classes parse_rtp/find_extension answer with"},
    {"bind_vp8", (PyCFunction)(void (*)(void))bind_vp8, METH_FASTCALL,
     "bind_vp8(Vp8Descriptor, Vp8Error): the classes parse_vp8/read_vp8_at answer with"},
    {"parse_rtp", (PyCFunction)(void (*)(void))parse_rtp, METH_FASTCALL | METH_KEYWORDS,
     "parse_rtp(data, max_size=1500) -> RtpHeader (sfu.packet.rtp.parse_rtp)"},
    {"find_extension", (PyCFunction)(void (*)(void))find_extension, METH_FASTCALL,
     "find_extension(data, profile, start, length, ext_id) -> bytes | None"},
    {"element_value", (PyCFunction)(void (*)(void))element_value, METH_FASTCALL,
     "element_value(data, profile, start, end, ext_id) -> int (sfu.packet.twcc)"},
    {"parse_vp8", (PyCFunction)parse_vp8, METH_O,
     "parse_vp8(payload) -> Vp8Descriptor (sfu.packet.vp8.parse_vp8)"},
    {"read_vp8_at", (PyCFunction)(void (*)(void))read_vp8_at, METH_FASTCALL,
     "read_vp8_at(data, offset, length) -> Vp8Descriptor | None"},
    {"unprotect", (PyCFunction)(void (*)(void))unprotect, METH_FASTCALL,
     "unprotect(owner, function, context, max_size, data) -> bytes | None (srtp_unprotect)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "sfu.native._rtp",
    "The receive path's RTP, header extension and VP8 descriptor parsing (see _rtp.c).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__rtp(void)
{
    if (PyType_Ready(&UnwrapperType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "SeqUnwrapper", (PyObject *)&UnwrapperType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
