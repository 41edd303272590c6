/* sfu.native._fanout: the per-copy send path in C (issue 16).
 *
 * SendBatch is the compiled twin of sfu.transport.mmsg.SendBatch: the same
 * methods, arguments, return values, counters and drop semantics (partial
 * sends, EAGAIN, a refused datagram), held to it by tests/test_native_fanout.py.
 * It owns one preallocated buffer of `capacity` slots of SLOT bytes, their
 * iovecs, mmsghdrs and sockaddrs; `add_rewritten` copies a forwarded packet
 * into the next slot, writes its RTP header fields (and the transport-wide
 * sequence number), protects it in place with libsrtp's srtp_protect and
 * queues it; `flush` sends the queue with sendmmsg.
 *
 * libsrtp is NOT linked: sfu.transport.srtp dlopens it (cffi) and checks it
 * against pylibsrtp once; each OutboundSrtp carries `ctx_address` (its
 * srtp_t) and `protect_address` (srtp_protect's address in that library),
 * which this module calls.  So the library is the one already verified.
 *
 * Hostile input: every length and offset is checked before any write; a
 * header field out of range raises ValueError, a full batch IndexError, and
 * nothing is queued then.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define SLOT 1536        /* as mmsg.SLOT */
#define SRTP_TRAILER 16  /* as mmsg.SRTP_TRAILER */
#define NAME_SIZE 28     /* sizeof(struct sockaddr_in6), the largest we send to */

typedef int (*protect_fn)(void *ctx, void *rtp_hdr, int *len_ptr);

static PyObject *s_send_errors, *s_oversize, *s_raw, *s_ctx_address, *s_protect_address;

/* counters.<name> += 1 (the rare paths: drops). */
static int
bump(PyObject *counters, PyObject *name)
{
    if (counters == NULL || counters == Py_None)
        return 0;
    PyObject *value = PyObject_GetAttr(counters, name);
    if (value == NULL)
        return -1;
    PyObject *one = PyLong_FromLong(1);
    PyObject *more = one ? PyNumber_Add(value, one) : NULL;
    Py_DECREF(value);
    Py_XDECREF(one);
    if (more == NULL)
        return -1;
    int rc = PyObject_SetAttr(counters, name, more);
    Py_DECREF(more);
    return rc;
}

typedef struct {
    PyObject_HEAD
    int fd;
    Py_ssize_t capacity;
    Py_ssize_t count;
    Py_ssize_t calls;   /* sendmmsg system calls made */
    Py_ssize_t sent;
    Py_ssize_t dropped;
    unsigned char *buffer;     /* capacity * SLOT */
    struct iovec *iov;
    struct mmsghdr *msgs;
    unsigned char *names;      /* capacity * NAME_SIZE */
    PyObject **destinations;   /* each slot's destination (strong), as mmsg's _names */
    PyObject **counters;       /* each queued slot's counters (strong) until flushed */
} SendBatch;

static void
batch_clear_counters(SendBatch *self, Py_ssize_t end)
{
    for (Py_ssize_t i = 0; i < end; i++)
        Py_CLEAR(self->counters[i]);
}

static void
batch_dealloc(SendBatch *self)
{
    if (self->destinations != NULL) {
        for (Py_ssize_t i = 0; i < self->capacity; i++)
            Py_XDECREF(self->destinations[i]);
    }
    if (self->counters != NULL)
        batch_clear_counters(self, self->capacity);
    PyMem_Free(self->buffer);
    PyMem_Free(self->iov);
    PyMem_Free(self->msgs);
    PyMem_Free(self->names);
    PyMem_Free(self->destinations);
    PyMem_Free(self->counters);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
batch_init(SendBatch *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "capacity", NULL};
    int fd;
    Py_ssize_t capacity = 256;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i|n", kwlist, &fd, &capacity))
        return -1;
    if (self->buffer != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "SendBatch is initialised once");
        return -1;
    }
    if (capacity < 1 || capacity > 1024) {  /* UIO_MAXIOV: sendmmsg takes at most 1024 */
        PyErr_SetString(PyExc_ValueError, "capacity must be 1..1024");
        return -1;
    }
    self->fd = fd;
    self->capacity = capacity;
    self->buffer = PyMem_Calloc((size_t)capacity, SLOT);
    self->iov = PyMem_Calloc((size_t)capacity, sizeof(struct iovec));
    self->msgs = PyMem_Calloc((size_t)capacity, sizeof(struct mmsghdr));
    self->names = PyMem_Calloc((size_t)capacity, NAME_SIZE);
    self->destinations = PyMem_Calloc((size_t)capacity, sizeof(PyObject *));
    self->counters = PyMem_Calloc((size_t)capacity, sizeof(PyObject *));
    if (!self->buffer || !self->iov || !self->msgs || !self->names || !self->destinations ||
        !self->counters) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < capacity; i++) {
        self->iov[i].iov_base = self->buffer + i * SLOT;
        self->msgs[i].msg_hdr.msg_iov = &self->iov[i];
        self->msgs[i].msg_hdr.msg_iovlen = 1;
    }
    return 0;
}

/* Point slot i at `destination` (its `raw` sockaddr, b"" for a connected socket). */
static int
batch_address(SendBatch *self, Py_ssize_t i, PyObject *destination)
{
    if (self->destinations[i] == destination)
        return 0;  /* a steady fan-out keeps its slots */
    PyObject *raw = PyObject_GetAttr(destination, s_raw);
    if (raw == NULL)
        return -1;
    if (!PyBytes_Check(raw) || PyBytes_GET_SIZE(raw) > NAME_SIZE) {
        Py_DECREF(raw);
        PyErr_SetString(PyExc_ValueError, "destination.raw must be a sockaddr of at most 28 bytes");
        return -1;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(raw);
    struct msghdr *hdr = &self->msgs[i].msg_hdr;
    if (size == 0) {
        hdr->msg_name = NULL;
    } else {
        memcpy(self->names + i * NAME_SIZE, PyBytes_AS_STRING(raw), (size_t)size);
        hdr->msg_name = self->names + i * NAME_SIZE;
    }
    hdr->msg_namelen = (socklen_t)size;
    Py_DECREF(raw);
    Py_INCREF(destination);
    Py_XSETREF(self->destinations[i], destination);
    return 0;
}

/* The queued slot i is complete: `size` bytes for `destination`, counted on `counters`. */
static int
batch_commit(SendBatch *self, Py_ssize_t i, size_t size, PyObject *destination, PyObject *counters)
{
    if (batch_address(self, i, destination) < 0)
        return -1;
    self->iov[i].iov_len = size;
    Py_INCREF(counters);
    Py_XSETREF(self->counters[i], counters);
    self->count = i + 1;
    return 0;
}

static int
batch_has_room(SendBatch *self)
{
    if (self->count >= self->capacity) {
        PyErr_SetString(PyExc_IndexError, "the send batch is full: flush it first");
        return 0;
    }
    return 1;
}

/* A bytes-like packet: pointer and length (bytes without a copy). */
typedef struct {
    Py_buffer view;
    const unsigned char *data;
    Py_ssize_t size;
    int held;
} Packet;

static int
packet_get(PyObject *obj, Packet *p)
{
    p->held = 0;
    if (PyBytes_Check(obj)) {
        p->data = (const unsigned char *)PyBytes_AS_STRING(obj);
        p->size = PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyObject_GetBuffer(obj, &p->view, PyBUF_SIMPLE) < 0)
        return -1;
    p->held = 1;
    p->data = p->view.buf;
    p->size = p->view.len;
    return 0;
}

static void
packet_release(Packet *p)
{
    if (p->held)
        PyBuffer_Release(&p->view);
}

/* The srtp_t and srtp_protect of an OutboundSrtp (sfu.transport.srtp). */
static int
srtp_of(PyObject *srtp, void **ctx, protect_fn *protect)
{
    PyObject *c = PyObject_GetAttr(srtp, s_ctx_address);
    if (c == NULL)
        return -1;
    PyObject *f = PyObject_GetAttr(srtp, s_protect_address);
    if (f == NULL) {
        Py_DECREF(c);
        return -1;
    }
    *ctx = PyLong_AsVoidPtr(c);
    void *fn = PyLong_AsVoidPtr(f);
    Py_DECREF(c);
    Py_DECREF(f);
    if (PyErr_Occurred())
        return -1;
    if (*ctx == NULL || fn == NULL) {
        PyErr_SetString(PyExc_ValueError, "the SRTP session has no context or protect function");
        return -1;
    }
    *protect = (protect_fn)fn;
    return 0;
}

static void
put16(unsigned char *at, unsigned long v)
{
    at[0] = (unsigned char)(v >> 8);
    at[1] = (unsigned char)v;
}

static void
put32(unsigned char *at, unsigned long v)
{
    at[0] = (unsigned char)(v >> 24);
    at[1] = (unsigned char)(v >> 16);
    at[2] = (unsigned char)(v >> 8);
    at[3] = (unsigned char)v;
}

/* An int argument in [lo, hi], else ValueError naming it. */
static int
ranged(PyObject *obj, long long lo, long long hi, const char *name, long long *out)
{
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        v = lo - 1;
    }
    if (v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s out of range", name);
        return -1;
    }
    *out = v;
    return 0;
}

/* The low 16 bits of any Python int (Python's `& 0xFFFF`, negatives included). */
static int
low16(PyObject *obj, unsigned long *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "twcc_seq must be an int");
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLongMask(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = (unsigned long)(v & 0xFFFF);
    return 0;
}

/* A byte offset argument; one beyond any packet (huge or negative) means "none": -1. */
static int
offset_of(PyObject *obj, Py_ssize_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "twcc_at must be an int");
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = (overflow || v < 0 || v > SLOT) ? -1 : (Py_ssize_t)v;
    return 0;
}

/* Protect slot i (`size` plain bytes) in place and queue it; protected size or -1. */
static Py_ssize_t
batch_seal(SendBatch *self, Py_ssize_t i, Py_ssize_t size, void *ctx, protect_fn protect,
           PyObject *destination, PyObject *counters)
{
    int length = (int)size;
    if (protect(ctx, self->buffer + i * SLOT, &length) != 0) {
        if (bump(counters, s_send_errors) < 0)
            return -2;
        return -1;
    }
    if (length < 0 || length > SLOT) {  /* never: libsrtp adds at most SRTP_TRAILER */
        PyErr_SetString(PyExc_RuntimeError, "srtp_protect returned an impossible length");
        return -2;
    }
    if (batch_commit(self, i, (size_t)length, destination, counters) < 0)
        return -2;
    return length;
}

static PyObject *
batch_add(SendBatch *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "add(data, destination, counters)");
        return NULL;
    }
    Packet p;
    if (packet_get(args[0], &p) < 0)
        return NULL;
    PyObject *result = NULL;
    if (p.size > SLOT) {
        if (bump(args[2], s_oversize) == 0)
            result = Py_NewRef(Py_False);
        goto done;
    }
    if (!batch_has_room(self))
        goto done;
    Py_ssize_t i = self->count;
    memcpy(self->buffer + i * SLOT, p.data, (size_t)p.size);
    if (batch_commit(self, i, (size_t)p.size, args[1], args[2]) < 0)
        goto done;
    result = PyBool_FromLong(self->count >= self->capacity);
done:
    packet_release(&p);
    return result;
}

/* add_srtp(packet, srtp, destination, counters, twcc_at=-1, twcc_seq=0) */
static PyObject *
batch_add_srtp(SendBatch *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 4 || nargs > 6) {
        PyErr_SetString(PyExc_TypeError,
                        "add_srtp(packet, srtp, destination, counters, twcc_at=-1, twcc_seq=0)");
        return NULL;
    }
    Py_ssize_t twcc_at = -1;
    unsigned long twcc_seq = 0;
    if (nargs > 4 && offset_of(args[4], &twcc_at) < 0)
        return NULL;
    if (nargs > 5 && low16(args[5], &twcc_seq) < 0)
        return NULL;
    Packet p;
    if (packet_get(args[0], &p) < 0)
        return NULL;
    PyObject *result = NULL;
    void *ctx;
    protect_fn protect;
    if (p.size > SLOT - SRTP_TRAILER) {
        if (bump(args[3], s_oversize) == 0)
            result = PyLong_FromLong(-1);
        goto done;
    }
    if (!batch_has_room(self) || srtp_of(args[1], &ctx, &protect) < 0)
        goto done;
    Py_ssize_t i = self->count;
    unsigned char *slot = self->buffer + i * SLOT;
    memcpy(slot, p.data, (size_t)p.size);
    if (twcc_at >= 0 && twcc_at <= p.size - 2)
        put16(slot + twcc_at, twcc_seq);
    Py_ssize_t size = batch_seal(self, i, p.size, ctx, protect, args[2], args[3]);
    if (size >= -1)
        result = PyLong_FromSsize_t(size);
done:
    packet_release(&p);
    return result;
}

/* The core of add_rewritten, shared with Sender: size, -1 (dropped, counted), -2 (error set). */
static Py_ssize_t
batch_rewrite(SendBatch *self, const unsigned char *data, Py_ssize_t size, unsigned pt,
              unsigned long seq, unsigned long ts, unsigned long ssrc, void *ctx,
              protect_fn protect, PyObject *destination, PyObject *counters, Py_ssize_t twcc_at,
              unsigned long twcc_seq)
{
    if (size > SLOT - SRTP_TRAILER || size < 12) {
        if (bump(counters, s_oversize) < 0)
            return -2;
        return -1;
    }
    if (!batch_has_room(self))
        return -2;
    Py_ssize_t i = self->count;
    unsigned char *slot = self->buffer + i * SLOT;
    memcpy(slot, data, (size_t)size);
    slot[1] = (unsigned char)((data[1] & 0x80) | pt);
    put16(slot + 2, seq);
    put32(slot + 4, ts);
    put32(slot + 8, ssrc);
    if (twcc_at >= 0 && twcc_at <= size - 2)
        put16(slot + twcc_at, twcc_seq);
    return batch_seal(self, i, size, ctx, protect, destination, counters);
}

/* header = (payload type, sequence, timestamp, SSRC), each range-checked */
static int
header_of(PyObject *header, unsigned *pt, unsigned long *seq, unsigned long *ts,
          unsigned long *ssrc)
{
    if (!PyTuple_Check(header) || PyTuple_GET_SIZE(header) != 4) {
        PyErr_SetString(PyExc_TypeError, "header must be (payload_type, sequence, timestamp, ssrc)");
        return -1;
    }
    long long v[4];
    if (ranged(PyTuple_GET_ITEM(header, 0), 0, 0xFF, "payload type", &v[0]) < 0 ||
        ranged(PyTuple_GET_ITEM(header, 1), 0, 0xFFFF, "sequence", &v[1]) < 0 ||
        ranged(PyTuple_GET_ITEM(header, 2), 0, 0xFFFFFFFFLL, "timestamp", &v[2]) < 0 ||
        ranged(PyTuple_GET_ITEM(header, 3), 0, 0xFFFFFFFFLL, "ssrc", &v[3]) < 0)
        return -1;
    *pt = (unsigned)v[0];
    *seq = (unsigned long)v[1];
    *ts = (unsigned long)v[2];
    *ssrc = (unsigned long)v[3];
    return 0;
}

/* add_rewritten(packet, header, srtp, destination, counters, twcc_at=-1, twcc_seq=0) */
static PyObject *
batch_add_rewritten(SendBatch *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 5 || nargs > 7) {
        PyErr_SetString(PyExc_TypeError, "add_rewritten(packet, header, srtp, destination, "
                                         "counters, twcc_at=-1, twcc_seq=0)");
        return NULL;
    }
    unsigned pt = 0;
    unsigned long seq = 0, ts = 0, ssrc = 0, twcc_seq = 0;
    Py_ssize_t twcc_at = -1;
    if (nargs > 5 && offset_of(args[5], &twcc_at) < 0)
        return NULL;
    if (nargs > 6 && low16(args[6], &twcc_seq) < 0)
        return NULL;
    Packet p;
    if (packet_get(args[0], &p) < 0)
        return NULL;
    PyObject *result = NULL;
    void *ctx = NULL;
    protect_fn protect = NULL;
    Py_ssize_t size = -2;
    /* as the Python twin: the size is judged before the header */
    int sized = p.size <= SLOT - SRTP_TRAILER && p.size >= 12;
    if (!sized || (header_of(args[1], &pt, &seq, &ts, &ssrc) == 0 &&
                   srtp_of(args[2], &ctx, &protect) == 0))
        size = batch_rewrite(self, p.data, p.size, pt, seq, ts, ssrc, ctx, protect, args[3],
                             args[4], twcc_at, twcc_seq);
    if (size >= -1)
        result = PyLong_FromSsize_t(size);
    packet_release(&p);
    return result;
}

/* Slots [start, end) were not sent: counted on their owners' counters. */
static int
batch_drop(SendBatch *self, Py_ssize_t start, Py_ssize_t end)
{
    int rc = 0;
    for (Py_ssize_t i = start; i < end; i++) {
        if (rc == 0 && bump(self->counters[i], s_send_errors) < 0)
            rc = -1;
    }
    self->dropped += end - start;
    return rc;
}

static Py_ssize_t
batch_flush_n(SendBatch *self)
{
    Py_ssize_t n = self->count;
    if (n == 0)
        return 0;
    self->count = 0;
    if (self->fd < 0) {
        int rc = batch_drop(self, 0, n);
        batch_clear_counters(self, n);
        return rc < 0 ? -1 : 0;
    }
    Py_ssize_t done = 0, sent = 0;
    int rc = 0;
    while (done < n) {
        self->calls += 1;
        int result, code;
        Py_BEGIN_ALLOW_THREADS
        result = sendmmsg(self->fd, self->msgs + done, (unsigned int)(n - done), MSG_DONTWAIT);
        code = errno;
        Py_END_ALLOW_THREADS
        if (result > 0) {
            done += result;
            sent += result;
            continue;
        }
        if (result == 0 || code == EAGAIN || code == EWOULDBLOCK || code == ENOBUFS) {
            rc = batch_drop(self, done, n);  /* the socket buffer is full: no spinning */
            break;
        }
        if (code == EINTR)
            continue;
        rc = batch_drop(self, done, done + 1);  /* this datagram was refused; the rest go on */
        done += 1;
    }
    self->sent += sent;
    batch_clear_counters(self, n);
    return rc < 0 ? -1 : sent;
}

static PyObject *
batch_flush(SendBatch *self, PyObject *unused)
{
    Py_ssize_t sent = batch_flush_n(self);
    return sent < 0 ? NULL : PyLong_FromSsize_t(sent);
}

static PyObject *
batch_close(SendBatch *self, PyObject *unused)
{
    self->fd = -1;
    if (batch_flush_n(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef batch_methods[] = {
    {"add", (PyCFunction)(void (*)(void))batch_add, METH_FASTCALL,
     "add(data, destination, counters) -> bool: copy a datagram in; True when now full"},
    {"add_srtp", (PyCFunction)(void (*)(void))batch_add_srtp, METH_FASTCALL,
     "add_srtp(packet, srtp, destination, counters, twcc_at=-1, twcc_seq=0) -> int"},
    {"add_rewritten", (PyCFunction)(void (*)(void))batch_add_rewritten, METH_FASTCALL,
     "add_rewritten(packet, header, srtp, destination, counters, twcc_at=-1, twcc_seq=0) -> int"},
    {"flush", (PyCFunction)batch_flush, METH_NOARGS, "send what is queued; datagrams taken"},
    {"close", (PyCFunction)batch_close, METH_NOARGS, "the socket is closed: drop what is queued"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef batch_members[] = {
    {"fd", T_INT, offsetof(SendBatch, fd), READONLY, NULL},
    {"capacity", T_PYSSIZET, offsetof(SendBatch, capacity), READONLY, NULL},
    {"count", T_PYSSIZET, offsetof(SendBatch, count), READONLY, NULL},
    {"calls", T_PYSSIZET, offsetof(SendBatch, calls), READONLY, NULL},
    {"sent", T_PYSSIZET, offsetof(SendBatch, sent), READONLY, NULL},
    {"dropped", T_PYSSIZET, offsetof(SendBatch, dropped), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject SendBatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu.native._fanout.SendBatch",
    .tp_basicsize = sizeof(SendBatch),
    .tp_dealloc = (destructor)batch_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Datagrams for one socket, sent with sendmmsg (sfu.transport.mmsg.SendBatch's twin)",
    .tp_methods = batch_methods,
    .tp_members = batch_members,
    .tp_init = (initproc)batch_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fanout", "The per-copy send path in C (see the source).", -1, NULL,
};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    if (PyType_Ready(&SendBatchType) < 0)
        return NULL;
    s_send_errors = PyUnicode_InternFromString("send_errors");
    s_oversize = PyUnicode_InternFromString("oversize");
    s_raw = PyUnicode_InternFromString("raw");
    s_ctx_address = PyUnicode_InternFromString("ctx_address");
    s_protect_address = PyUnicode_InternFromString("protect_address");
    if (!s_send_errors || !s_oversize || !s_raw || !s_ctx_address || !s_protect_address)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SendBatchType);
    if (PyModule_AddObject(m, "SendBatch", (PyObject *)&SendBatchType) < 0) {
        Py_DECREF(&SendBatchType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "SLOT", SLOT) < 0 ||
        PyModule_AddIntConstant(m, "SRTP_TRAILER", SRTP_TRAILER) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
