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
#include <limits.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "slots.h"

#define SLOT 1536        /* as mmsg.SLOT */
#define SRTP_TRAILER 16  /* as mmsg.SRTP_TRAILER */
#define NAME_SIZE 28     /* sizeof(struct sockaddr_in6), the largest we send to */

typedef int (*protect_fn)(void *ctx, void *rtp_hdr, int *len_ptr);

static PyObject *s_send_errors, *s_oversize, *s_raw, *s_ctx_address, *s_protect_address;

/* PyLong_AsLongLong without its slow path: in CPython 3.11 that one converts
 * every int above 2**30 (timestamps, SSRCs, byte counts) through a byte array. */
static long long
as_ll(PyObject *obj)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "int too large for the media path");
        return -1;
    }
    return v;
}

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
    long long v = as_ll(obj);
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



/* ---- RecvBatch: recvmmsg into preallocated slots --------------------------
 *
 * The twin of sfu.transport.mmsg.RecvBatch: `read()` returns what is waiting
 * as [(bytes, (host, port), arrival)] (empty when nothing is; OSError for a
 * real error), at most `capacity` datagrams per call; a datagram longer than
 * a slot arrives truncated (the receive path drops it as oversize).  Addresses
 * are converted once and kept (at most 4096, then the cache starts again).
 *
 * `arrival`: when the kernel received the datagram, in seconds on
 * CLOCK_MONOTONIC (Python's time.monotonic), from its SCM_TIMESTAMPNS
 * control message when the socket has SO_TIMESTAMPNS on (sfu.transport.rxtime
 * says how the CLOCK_REALTIME stamp is converted, `monotonic_of` below is the
 * same arithmetic); the read's own time when there is none.
 */
#define RECV_SLOT 2048  /* as mmsg.RECV_SLOT */
#define NAME_SLOT 128
#define CONTROL_SLOT 64  /* CMSG_SPACE(sizeof(struct timespec)) is 32 on 64-bit Linux */
#define MAX_AGE_NS 2000000000LL  /* as rxtime.MAX_AGE_NS */

/* The kernel's CLOCK_REALTIME stamp `stamp_ns` on the monotonic clock, given
 * `offset_ns` (realtime - monotonic, sampled at the read) and the read's
 * monotonic time `read_ns`: never after the read, never more than MAX_AGE_NS
 * before it (a realtime step between the two); `stamp_ns` <= 0: the read's time. */
static long long
monotonic_ns_of(long long stamp_ns, long long offset_ns, long long read_ns)
{
    long long at;
    if (stamp_ns <= 0 || __builtin_sub_overflow(stamp_ns, offset_ns, &at) || at > read_ns)
        return read_ns;
    if (at < read_ns - MAX_AGE_NS)
        return read_ns - MAX_AGE_NS;
    return at;
}

static long long
ns_of(const struct timespec *t)
{
    return (long long)t->tv_sec * 1000000000LL + (long long)t->tv_nsec;
}

/* realtime - monotonic now, against the middle of two monotonic reads around
 * the realtime one (the narrowest of up to OFFSET_TRIES brackets: a thread
 * preempted inside one would be off by half the preemption), and the last
 * monotonic read.  As rxtime.clock_offset. */
#define OFFSET_TRIES 3
#define GOOD_BRACKET_NS 20000LL

static void
clock_offset(long long *offset_ns, long long *read_ns)
{
    long long best = -1;
    *offset_ns = 0;
    for (int i = 0; i < OFFSET_TRIES; i++) {
        struct timespec m1, r, m2;
        clock_gettime(CLOCK_MONOTONIC, &m1);
        clock_gettime(CLOCK_REALTIME, &r);
        clock_gettime(CLOCK_MONOTONIC, &m2);
        long long before = ns_of(&m1), after = ns_of(&m2), width = after - before;
        *read_ns = after;
        if (best < 0 || width < best) {
            best = width;
            *offset_ns = ns_of(&r) - (before + width / 2);
        }
        if (width <= GOOD_BRACKET_NS)
            break;
    }
}

/* The SCM_TIMESTAMPNS stamp of one received message in ns, or 0 when it has none. */
static long long
kernel_stamp(struct msghdr *hdr)
{
    if (hdr->msg_flags & MSG_CTRUNC || hdr->msg_controllen > CONTROL_SLOT)
        return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(hdr); c != NULL; c = CMSG_NXTHDR(hdr, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec t;
            memcpy(&t, CMSG_DATA(c), sizeof(t));
            if (t.tv_sec < 0 || t.tv_nsec < 0 || t.tv_nsec >= 1000000000L ||
                t.tv_sec > LLONG_MAX / 1000000000LL - 2) /* as rxtime._ns */
                return 0;
            return ns_of(&t);
        }
    }
    return 0;
}

typedef struct {
    PyObject_HEAD
    int fd;
    Py_ssize_t capacity;
    Py_ssize_t calls;
    unsigned char *buffer;  /* capacity * RECV_SLOT */
    unsigned char *names;   /* capacity * NAME_SLOT */
    unsigned char *control; /* capacity * CONTROL_SLOT: each datagram's control messages */
    struct iovec *iov;
    struct mmsghdr *msgs;
    PyObject *addresses;    /* raw sockaddr bytes -> (host, port) */
} RecvBatch;

static void
recv_dealloc(RecvBatch *self)
{
    PyMem_Free(self->buffer);
    PyMem_Free(self->names);
    PyMem_Free(self->control);
    PyMem_Free(self->iov);
    PyMem_Free(self->msgs);
    Py_XDECREF(self->addresses);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
recv_init(RecvBatch *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "capacity", NULL};
    int fd;
    Py_ssize_t capacity = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i|n", kwlist, &fd, &capacity))
        return -1;
    if (self->buffer != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RecvBatch is initialised once");
        return -1;
    }
    if (capacity < 1 || capacity > 1024) {
        PyErr_SetString(PyExc_ValueError, "capacity must be 1..1024");
        return -1;
    }
    self->fd = fd;
    self->capacity = capacity;
    self->buffer = PyMem_Calloc((size_t)capacity, RECV_SLOT);
    self->names = PyMem_Calloc((size_t)capacity, NAME_SLOT);
    self->control = PyMem_Calloc((size_t)capacity, CONTROL_SLOT);
    self->iov = PyMem_Calloc((size_t)capacity, sizeof(struct iovec));
    self->msgs = PyMem_Calloc((size_t)capacity, sizeof(struct mmsghdr));
    self->addresses = PyDict_New();
    if (!self->buffer || !self->names || !self->control || !self->iov || !self->msgs || !self->addresses) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < capacity; i++) {
        self->iov[i].iov_base = self->buffer + i * RECV_SLOT;
        self->iov[i].iov_len = RECV_SLOT;
        self->msgs[i].msg_hdr.msg_iov = &self->iov[i];
        self->msgs[i].msg_hdr.msg_iovlen = 1;
        self->msgs[i].msg_hdr.msg_name = self->names + i * NAME_SLOT;
        self->msgs[i].msg_hdr.msg_control = self->control + i * CONTROL_SLOT;
    }
    return 0;
}

/* (host, port) of a sockaddr_in / sockaddr_in6, as mmsg.address gives it. */
static PyObject *
address_of(const unsigned char *raw, socklen_t size)
{
    char host[INET6_ADDRSTRLEN];
    unsigned short family;
    if (size < sizeof(family)) {
        PyErr_SetString(PyExc_ValueError, "a datagram without a source address");
        return NULL;
    }
    memcpy(&family, raw, sizeof(family));
    if (family == AF_INET && size >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, raw, sizeof(a));
        if (inet_ntop(AF_INET, &a.sin_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, (int)ntohs(a.sin_port));
    }
    if (family == AF_INET6 && size >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, raw, sizeof(a));
        if (inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, (int)ntohs(a.sin6_port));
    }
    PyErr_SetString(PyExc_ValueError, "a source address of another family");
    return NULL;
}

static PyObject *
recv_address(RecvBatch *self, const unsigned char *raw, socklen_t size)
{
    PyObject *key = PyBytes_FromStringAndSize((const char *)raw, size);
    if (key == NULL)
        return NULL;
    PyObject *addr = PyDict_GetItemWithError(self->addresses, key);
    if (addr != NULL) {
        Py_DECREF(key);
        return Py_NewRef(addr);
    }
    if (PyErr_Occurred() || (addr = address_of(raw, size)) == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    if (PyDict_GET_SIZE(self->addresses) >= 4096)
        PyDict_Clear(self->addresses);
    int rc = PyDict_SetItem(self->addresses, key, addr);
    Py_DECREF(key);
    if (rc < 0) {
        Py_DECREF(addr);
        return NULL;
    }
    return addr;
}

static PyObject *
recv_read(RecvBatch *self, PyObject *unused)
{
    for (Py_ssize_t i = 0; i < self->capacity; i++) {
        self->msgs[i].msg_hdr.msg_namelen = NAME_SLOT;
        self->msgs[i].msg_hdr.msg_controllen = CONTROL_SLOT;
    }
    self->calls += 1;
    int n, code;
    Py_BEGIN_ALLOW_THREADS
    n = recvmmsg(self->fd, self->msgs, (unsigned int)self->capacity, MSG_DONTWAIT, NULL);
    code = errno;
    Py_END_ALLOW_THREADS
    if (n < 0) {
        if (code == EAGAIN || code == EWOULDBLOCK || code == EINTR)
            return PyList_New(0);
        errno = code;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    long long offset_ns, read_ns;
    clock_offset(&offset_ns, &read_ns);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        struct msghdr *hdr = &self->msgs[i].msg_hdr;
        long long at = monotonic_ns_of(kernel_stamp(hdr), offset_ns, read_ns);
        size_t len = self->msgs[i].msg_len;
        socklen_t namelen = hdr->msg_namelen > NAME_SLOT ? NAME_SLOT : hdr->msg_namelen;
        if (len > RECV_SLOT)
            len = RECV_SLOT;
        PyObject *data = PyBytes_FromStringAndSize((const char *)self->buffer + i * RECV_SLOT,
                                                   (Py_ssize_t)len);
        PyObject *addr = data ? recv_address(self, self->names + i * NAME_SLOT, namelen) : NULL;
        PyObject *arrival = addr ? PyFloat_FromDouble((double)at / 1e9) : NULL;
        PyObject *item = arrival ? PyTuple_Pack(3, data, addr, arrival) : NULL;
        Py_XDECREF(data);
        Py_XDECREF(addr);
        Py_XDECREF(arrival);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

static PyMethodDef recv_methods[] = {
    {"read", (PyCFunction)recv_read, METH_NOARGS,
     "read() -> [(bytes, (host, port), arrival)]: what is waiting now (at most capacity)"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef recv_members[] = {
    {"fd", T_INT, offsetof(RecvBatch, fd), READONLY, NULL},
    {"capacity", T_PYSSIZET, offsetof(RecvBatch, capacity), READONLY, NULL},
    {"calls", T_PYSSIZET, offsetof(RecvBatch, calls), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RecvBatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu.native._fanout.RecvBatch",
    .tp_basicsize = sizeof(RecvBatch),
    .tp_dealloc = (destructor)recv_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Up to capacity datagrams per recvmmsg (sfu.transport.mmsg.RecvBatch's twin)",
    .tp_methods = recv_methods,
    .tp_members = recv_members,
    .tp_init = (initproc)recv_init,
    .tp_new = PyType_GenericNew,
};

/* ---- Slotted Python objects read and written in place -------------------
 *
 * The Python classes keep their fields (one source of truth); `configure`
 * resolves the `__slots__` member descriptors of the fields below once, and
 * the loops read and write them at those offsets, as Python's own slot
 * access does.  An object of any other type (a subclass, a test double)
 * takes the Python path.
 */

enum { C_RTP_OUT, C_BYTES_OUT, C_N };
static const char *counters_names[] = {"rtp_out", "bytes_out"};
enum { H_NEXT, H_RING, H_MASK, H_N };
static const char *history_names[] = {"next", "ring", "mask"};
enum {
    K_SOURCE, K_CUT, K_THUMBNAIL, K_MAPS, K_TID_TARGET, K_PT_BY_CODEC, K_FRESH, K_FIRST_IN,
    K_SEQ_OFFSET, K_TS_OFFSET, K_SEQ, K_TS, K_TIME, K_EXT_MAP, K_OUTPUT, K_SSRC,
    K_PACKETS_SENT, K_OCTETS_SENT, K_MEMO, K_N
};
static const char *consumer_names[] = {
    "source", "_cut", "thumbnail", "_maps", "_tid_target", "pt_by_codec", "_fresh", "_first_in",
    "_seq_offset", "_ts_offset", "_seq", "_ts", "_time", "_ext_map", "output", "ssrc",
    "packets_sent", "octets_sent", "_memo",
};

typedef struct {
    PyTypeObject *type;  /* NULL until configured */
    Py_ssize_t offsets[K_N];
} SlotTable;

enum { E_IDLE, E_N };
static const char *egress_names[] = {"idle"};

static SlotTable counters_slots, history_slots, consumer_slots, egress_slots;
static long max_tid = -1;  /* sfu.routing.layers.MAX_TID, given with the Consumer class */

#define SLOT_AT(obj, table, k) (*(PyObject **)((char *)(obj) + (table).offsets[k]))

static int
resolve(SlotTable *table, PyObject *cls, const char **names, int n)
{
    if (slot_offsets(cls, names, n, table->offsets, K_N) < 0)
        return -1;
    Py_INCREF(cls);
    Py_XSETREF(table->type, (PyTypeObject *)cls);
    return 0;
}

/* The VP8 descriptor class (sfu.packet.vp8.Vp8Descriptor, a NamedTuple) and
 * the indices of its `start`, `partition` and `tid` fields: a descriptor of
 * exactly this class is read as a tuple, without its Python `frame_start`
 * property (a Python call per video packet).  Anything else is read by name. */
static PyTypeObject *descriptor_type;
static Py_ssize_t desc_start = -1, desc_partition = -1, desc_tid = -1;

/* The index of field `name` in a NamedTuple class's `_fields`. */
static Py_ssize_t
field_index(PyObject *fields, const char *name)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fields); i++) {
        PyObject *f = PyTuple_GET_ITEM(fields, i);
        if (PyUnicode_Check(f) && PyUnicode_CompareWithASCIIString(f, name) == 0)
            return i;
    }
    PyErr_Format(PyExc_AttributeError, "the descriptor class has no field %s", name);
    return -1;
}

static int
configure_descriptor(PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the descriptor class must be a NamedTuple");
        return -1;
    }
    PyObject *fields = PyObject_GetAttrString(cls, "_fields");
    if (fields == NULL)
        return -1;
    int rc = -1;
    if (!PyTuple_Check(fields))
        PyErr_SetString(PyExc_TypeError, "the descriptor class's _fields must be a tuple");
    else {
        Py_ssize_t start = field_index(fields, "start");
        Py_ssize_t partition = start < 0 ? -1 : field_index(fields, "partition");
        Py_ssize_t tid = partition < 0 ? -1 : field_index(fields, "tid");
        if (tid >= 0) {
            Py_XSETREF(descriptor_type, (PyTypeObject *)Py_NewRef(cls));
            desc_start = start;
            desc_partition = partition;
            desc_tid = tid;
            rc = 0;
        }
    }
    Py_DECREF(fields);
    return rc;
}

/* configure(role, cls[, max_tid]): role "counters", "history", "egress", "consumer" or
 * "descriptor". */
static PyObject *
fanout_configure(PyObject *module, PyObject *args)
{
    const char *role;
    PyObject *cls;
    long tid = -1;
    if (!PyArg_ParseTuple(args, "sO|l", &role, &cls, &tid))
        return NULL;
    int rc;
    if (strcmp(role, "descriptor") == 0)
        rc = configure_descriptor(cls);
    else if (strcmp(role, "counters") == 0)
        rc = resolve(&counters_slots, cls, counters_names, C_N);
    else if (strcmp(role, "history") == 0)
        rc = resolve(&history_slots, cls, history_names, H_N);
    else if (strcmp(role, "egress") == 0)
        rc = resolve(&egress_slots, cls, egress_names, E_N);
    else if (strcmp(role, "consumer") == 0) {
        rc = resolve(&consumer_slots, cls, consumer_names, K_N);
        if (rc == 0)  /* a refused class leaves the limit as it was, like the table */
            max_tid = tid;
    } else {
        PyErr_SetString(PyExc_ValueError,
                        "role must be counters, history, egress, consumer or descriptor");
        return NULL;
    }
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* *slot += by, for an int slot (0 if unset, as never here: the classes set them all). */
static int
slot_add(PyObject **slot, long long by)
{
    PyObject *old = *slot;
    long long v = 0;
    if (old != NULL) {
        v = as_ll(old);
        if (v == -1 && PyErr_Occurred())
            return -1;
    }
    PyObject *now = PyLong_FromLongLong(v + by);
    if (now == NULL)
        return -1;
    Py_XSETREF(*slot, now);
    return 0;
}

static int
slot_set_long(PyObject **slot, long long v)
{
    PyObject *now = PyLong_FromLongLong(v);
    if (now == NULL)
        return -1;
    Py_XSETREF(*slot, now);
    return 0;
}

/* ---- Memo: a consumer's fields as C numbers, checked by identity ----------
 *
 * Each plain copy reads a consumer's `_first_in`, `_seq_offset`, `_ts_offset`,
 * `_seq`, `ssrc`, `packets_sent`, `octets_sent` and `pt_by_codec[codec]`.
 * Those are Python objects scattered over the heap, one cache miss each in a
 * busy server (perf: PyLong_AsLongLongAndOverflow and the dict lookup were
 * about a third of this loop's CPython time in the 10x10 meeting).  The memo
 * (one per consumer, in its `_memo` slot, made here at its first plain copy;
 * Python only ever sets that slot to None) keeps each value as a C number
 * next to the very object it was read from:
 *
 * - a Cell holds a strong reference to the int it was read from, so that
 *   object cannot be freed and its address reused: while the consumer's slot
 *   still holds that same object (a pointer comparison, no read of the
 *   object), the value is the Cell's; when Python stored any other object
 *   there, it is read again.  So whoever changes a field (Python's rare
 *   paths: a new segment, a switch, a renegotiation, a test) does nothing
 *   special; the next copy sees it.
 * - the payload type is kept with the dict it came from (a strong
 *   reference), the codec string and the dict's version tag, which CPython
 *   changes on every insertion, deletion or value change of that dict
 *   (PEP 509; CPython 3.11 keeps it in PyDictObject): a new dict, another
 *   codec or a change in place reads the dict again.  From CPython 3.12 on the
 *   tag is no longer there and the dict is read every time.
 *
 * Writes go through the slot as before (a new int), and the Cell takes the new
 * object with its value, so the next copy does not read it back.
 */
typedef struct {
    PyObject *obj; /* the int this value was read from (strong), or NULL */
    long long value;
} Cell;

enum { M_FIRST_IN, M_SEQ_OFFSET, M_TS_OFFSET, M_SEQ, M_SSRC, M_PACKETS, M_OCTETS, M_N };

typedef struct {
    PyObject_HEAD
    Cell cells[M_N];
    PyObject *pt_dict;  /* the pt_by_codec dict the payload type came from (strong) */
    PyObject *pt_codec; /* and the codec (strong) */
    uint64_t pt_version;
    long long pt;
    int pt_found;       /* 0: the codec is not in the dict */
    /* The output's `fast` (a Direct, strong) while the consumer's `output` slot holds
     * `output` (strong) and the Direct is not retired: WebRtcTransport's `fast`
     * setter retires the Direct it replaces, so the transport owns the rule. */
    PyObject *output;
    PyObject *direct;
} Memo;

static PyTypeObject MemoType;

static int
memo_traverse(Memo *self, visitproc visit, void *arg)
{
    Py_VISIT(self->pt_dict);
    Py_VISIT(self->output);
    Py_VISIT(self->direct);
    return 0;
}

static int
memo_clear(Memo *self)
{
    for (int k = 0; k < M_N; k++)
        Py_CLEAR(self->cells[k].obj);
    Py_CLEAR(self->pt_dict);
    Py_CLEAR(self->pt_codec);
    Py_CLEAR(self->output);
    Py_CLEAR(self->direct);
    return 0;
}

static void
memo_dealloc(Memo *self)
{
    PyObject_GC_UnTrack(self);
    memo_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
memo_refreshes(Memo *self, void *closure)
{
    (void)closure;
    Py_ssize_t n = 0;
    for (int k = 0; k < M_N; k++)
        n += self->cells[k].obj != NULL;
    return PyLong_FromSsize_t(n);
}

static PyGetSetDef memo_getset[] = {
    {"cells", (getter)memo_refreshes, NULL, "how many of the fields are held (for tests)", NULL},
    {NULL},
};

static PyTypeObject MemoType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu.native._fanout.Memo",
    .tp_basicsize = sizeof(Memo),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A consumer's plain-copy fields as C numbers, each checked by identity (see the source)",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)memo_dealloc,
    .tp_traverse = (traverseproc)memo_traverse,
    .tp_clear = (inquiry)memo_clear,
    .tp_getset = memo_getset,
};

/* The value of the int `obj` (a consumer's slot), from the Cell while it still holds `obj`. */
static inline int
cell_read(Cell *cell, PyObject *obj, long long *out)
{
    if (obj == cell->obj) {
        *out = cell->value;
        return 0;
    }
    long long v = as_ll(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    Py_INCREF(obj);
    Py_XSETREF(cell->obj, obj);
    cell->value = v;
    *out = v;
    return 0;
}

/* *slot = int(v), and the Cell holds the new object with its value. */
static int
cell_store(Cell *cell, PyObject **slot, long long v)
{
    PyObject *now = PyLong_FromLongLong(v);
    if (now == NULL)
        return -1;
    Py_INCREF(now);
    Py_XSETREF(cell->obj, now);
    cell->value = v;
    Py_XSETREF(*slot, now);
    return 0;
}

/* *slot += by, its current value from the Cell. */
static int
cell_add(Cell *cell, PyObject **slot, long long by)
{
    long long v;
    if (cell_read(cell, *slot, &v) < 0)
        return -1;
    return cell_store(cell, slot, v + by);
}

/* pt_by_codec[codec] as a C number: 1 found, 0 not there, -1 an error. */
static int
memo_pt(Memo *self, PyObject *dict, PyObject *codec, long long *pt)
{
#if PY_VERSION_HEX < 0x030C0000
    uint64_t version = ((PyDictObject *)dict)->ma_version_tag;
    if (dict == self->pt_dict && codec == self->pt_codec && version == self->pt_version) {
        *pt = self->pt;
        return self->pt_found;
    }
#else
    uint64_t version = 0;
#endif
    PyObject *found = PyDict_GetItemWithError(dict, codec); /* borrowed: */
    if (found == NULL && PyErr_Occurred())
        return -1;
    long long value = -1;
    if (found != NULL) {
        value = as_ll(found); /* read now, before any Python code runs */
        if (value == -1 && PyErr_Occurred())
            return -1;
    }
    Py_INCREF(dict);
    Py_XSETREF(self->pt_dict, dict);
    Py_INCREF(codec);
    Py_XSETREF(self->pt_codec, codec);
    self->pt_version = version;
    self->pt = value;
    self->pt_found = found != NULL;
    *pt = value;
    return found != NULL;
}

/* The consumer's memo (borrowed), made on first use; NULL with an error set. */
static Memo *
memo_of(PyObject **slot)
{
    if (Py_IS_TYPE(*slot, &MemoType))
        return (Memo *)*slot;
    Memo *memo = PyObject_GC_New(Memo, &MemoType);
    if (memo == NULL)
        return NULL;
    memset(memo->cells, 0, sizeof(memo->cells));
    memo->pt_dict = memo->pt_codec = NULL;
    memo->pt_version = 0;
    memo->pt = -1;
    memo->pt_found = 0;
    memo->output = memo->direct = NULL;
    PyObject_GC_Track(memo);
    Py_XSETREF(*slot, (PyObject *)memo);
    return memo;
}

/* ---- Direct: one transport's keyed, batched route (WebRtcTransport.fast) ----
 *
 * Built by the transport when its route is on a shared socket with the
 * compiled batch and its SRTP session is ours; it holds the same objects as
 * the transport's `_direct` tuple plus its counters, send history and egress
 * (references, not copies).  `send` is `WebRtcTransport.send_rewritten`'s
 * direct branch: batch add + transport-wide number + history record +
 * counters + flush or schedule.
 */
typedef struct {
    PyObject_HEAD
    SendBatch *batch;
    PyObject *destination, *srtp, *counters, *history, *egress;
    void *ctx;
    protect_fn protect;
    /* The transport's `twcc_id` and `probe_id`, which the plain copies read from
     * here: WebRtcTransport's properties write them here too whenever they
     * change, and `_set_direct` gives them to a new Direct. */
    long twcc_id;
    PyObject *probe_id;
    int retired; /* replaced as its transport's `fast` (`retire()`): memos read it again */
    /* The send history's ring (SendHistory.ring: HISTORY_STRIDE doubles a slot)
     * as a buffer held from its first use, and its mask's value, each kept
     * while the history's slot still holds the same object (the array cannot
     * be resized while its buffer is held; SendHistory never resizes it). */
    PyObject *ring;
    Py_buffer ring_view;
    PyObject *mask;
    long long mask_value;
} Direct;

#define HISTORY_STRIDE 4 /* as sfu.transport.sendhistory.STRIDE */

static PyTypeObject DirectType;
static PyObject *s_idle, *s_schedule, *s_flush, *s_forward, *s_fast;
static PyObject *s_sequence, *s_timestamp, *s_payload_length, *s_desc, *s_tid, *s_frame_start;

static void
direct_dealloc(Direct *self)
{
    Py_XDECREF(self->batch);
    Py_XDECREF(self->destination);
    Py_XDECREF(self->srtp);
    Py_XDECREF(self->counters);
    Py_XDECREF(self->history);
    Py_XDECREF(self->egress);
    Py_XDECREF(self->probe_id);
    if (self->ring != NULL) {
        PyBuffer_Release(&self->ring_view);
        Py_DECREF(self->ring);
    }
    Py_XDECREF(self->mask);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
direct_init(Direct *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"batch", "destination", "srtp", "counters", "history", "egress",
                             "twcc_id", "probe_id", NULL};
    PyObject *batch, *destination, *srtp, *counters, *history, *egress, *probe_id = NULL;
    long twcc_id = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OOOOO|lO!", kwlist, &SendBatchType, &batch,
                                     &destination, &srtp, &counters, &history, &egress,
                                     &twcc_id, &PyLong_Type, &probe_id))
        return -1;
    if (self->batch != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Direct is initialised once");
        return -1;
    }
    if (counters_slots.type == NULL || history_slots.type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure counters and history first");
        return -1;
    }
    if (!Py_IS_TYPE(counters, counters_slots.type) || !Py_IS_TYPE(history, history_slots.type)) {
        PyErr_SetString(PyExc_TypeError, "counters and history must be the configured classes");
        return -1;
    }
    if (srtp_of(srtp, &self->ctx, &self->protect) < 0)
        return -1;
    self->batch = (SendBatch *)Py_NewRef(batch);
    self->destination = Py_NewRef(destination);
    self->srtp = Py_NewRef(srtp);
    self->counters = Py_NewRef(counters);
    self->history = Py_NewRef(history);
    self->egress = Py_NewRef(egress);
    self->twcc_id = twcc_id;
    self->probe_id = probe_id != NULL ? Py_NewRef(probe_id) : PyLong_FromLong(-1);
    return self->probe_id == NULL ? -1 : 0;
}

static PyObject *
direct_get_probe_id(Direct *self, void *closure)
{
    (void)closure;
    return Py_NewRef(self->probe_id != NULL ? self->probe_id : Py_None);
}

static int
direct_set_probe_id(Direct *self, PyObject *value, void *closure)
{
    (void)closure;
    if (value == NULL || !PyLong_CheckExact(value)) {
        PyErr_SetString(PyExc_TypeError, "probe_id is an int");
        return -1;
    }
    Py_XSETREF(self->probe_id, Py_NewRef(value));
    return 0;
}

static PyGetSetDef direct_getset[] = {
    {"probe_id", (getter)direct_get_probe_id, (setter)direct_set_probe_id,
     "the transport's probe cluster (WebRtcTransport.probe_id writes it)", NULL},
    {NULL},
};

static double
monotonic(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);  /* what time.monotonic() reads on Linux */
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The history's ring buffer and mask value in self (kept while its slots hold
 * the same objects): 0, or -1 with an error set. */
static int
direct_ring(Direct *self)
{
    PyObject *ring = SLOT_AT(self->history, history_slots, H_RING);
    PyObject *mask = SLOT_AT(self->history, history_slots, H_MASK);
    if (ring == NULL || mask == NULL) {
        PyErr_SetString(PyExc_TypeError, "the send history is not set up");
        return -1;
    }
    if (ring != self->ring) {
        Py_buffer view;
        if (PyObject_GetBuffer(ring, &view, PyBUF_WRITABLE) < 0)
            return -1;
        if (self->ring != NULL) {
            PyBuffer_Release(&self->ring_view);
            Py_DECREF(self->ring);
        }
        self->ring_view = view;
        self->ring = Py_NewRef(ring);
    }
    if (mask != self->mask) {
        long long value = as_ll(mask);
        if (value == -1 && PyErr_Occurred())
            return -1;
        Py_XSETREF(self->mask, Py_NewRef(mask));
        self->mask_value = value;
    }
    return 0;
}

/* The send: size, -1 (dropped, counted), -2 (error set).  `twcc`: the
 * transport's extension id (0: none, then twcc_at is ignored). */
static Py_ssize_t
direct_send(Direct *self, const unsigned char *data, Py_ssize_t size, unsigned pt,
            unsigned long seq, unsigned long ts, unsigned long ssrc, Py_ssize_t twcc_at,
            long twcc, PyObject *probe)
{
    SendBatch *batch = self->batch;
    Py_ssize_t sent;
    if (twcc) {
        PyObject **next_slot = &SLOT_AT(self->history, history_slots, H_NEXT);
        if (*next_slot == NULL || direct_ring(self) < 0)
            return -2;
        long long next = as_ll(*next_slot);
        long long probe_value = as_ll(probe);
        if (PyErr_Occurred())
            return -2;
        if (slot_set_long(next_slot, next + 1) < 0)
            return -2;
        sent = batch_rewrite(batch, data, size, pt, seq, ts, ssrc, self->ctx, self->protect,
                             self->destination, self->counters, twcc_at,
                             (unsigned long)(next & 0xFFFF));
        if (sent > 0) {  /* history.add: (seq, send time, RTP bytes, probe cluster) in place */
            Py_ssize_t index = (Py_ssize_t)(next & self->mask_value);
            if (index < 0 || (index + 1) * (Py_ssize_t)(HISTORY_STRIDE * sizeof(double)) >
                                 self->ring_view.len) {
                PyErr_SetString(PyExc_IndexError, "the send history ring is smaller than its mask");
                return -2;
            }
            double entry[HISTORY_STRIDE] = {(double)next, monotonic(), (double)size,
                                            (double)probe_value};
            memcpy((char *)self->ring_view.buf + index * (Py_ssize_t)sizeof(entry), entry,
                   sizeof(entry));
        }
    } else {
        sent = batch_rewrite(batch, data, size, pt, seq, ts, ssrc, self->ctx, self->protect,
                             self->destination, self->counters, -1, 0);
    }
    if (sent < -1)
        return -2;
    if (sent > 0) {
        if (slot_add(&SLOT_AT(self->counters, counters_slots, C_RTP_OUT), 1) < 0 ||
            slot_add(&SLOT_AT(self->counters, counters_slots, C_BYTES_OUT), sent) < 0)
            return -2;
    }
    if (batch->count >= batch->capacity) {
        if (batch_flush_n(batch) < 0)
            return -2;
    } else {
        /* egress.idle: its slot when the egress is of the configured class */
        PyObject *idle = egress_slots.type != NULL && Py_IS_TYPE(self->egress, egress_slots.type)
                             ? Py_XNewRef(SLOT_AT(self->egress, egress_slots, E_IDLE))
                             : PyObject_GetAttr(self->egress, s_idle);
        if (idle == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_AttributeError, s_idle);
            return -2;
        }
        int is_idle = PyObject_IsTrue(idle);
        Py_DECREF(idle);
        if (is_idle < 0)
            return -2;
        if (is_idle) {
            PyObject *r = PyObject_CallMethodNoArgs(self->egress, s_schedule);
            if (r == NULL)
                return -2;
            Py_DECREF(r);
        }
    }
    return sent;
}

/* send(packet, payload_type, sequence, timestamp, ssrc, twcc_at, twcc_id, probe_id) -> int */
static PyObject *
direct_send_py(Direct *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "send(packet, payload_type, sequence, timestamp, ssrc, "
                                         "twcc_at, twcc_id, probe_id)");
        return NULL;
    }
    long long v[4];
    Py_ssize_t twcc_at;
    if (ranged(args[1], 0, 0xFF, "payload type", &v[0]) < 0 ||
        ranged(args[2], 0, 0xFFFF, "sequence", &v[1]) < 0 ||
        ranged(args[3], 0, 0xFFFFFFFFLL, "timestamp", &v[2]) < 0 ||
        ranged(args[4], 0, 0xFFFFFFFFLL, "ssrc", &v[3]) < 0 || offset_of(args[5], &twcc_at) < 0)
        return NULL;
    long twcc = PyLong_AsLong(args[6]);
    if (twcc == -1 && PyErr_Occurred())
        return NULL;
    Packet p;
    if (packet_get(args[0], &p) < 0)
        return NULL;
    Py_ssize_t sent = direct_send(self, p.data, p.size, (unsigned)v[0], (unsigned long)v[1],
                                  (unsigned long)v[2], (unsigned long)v[3], twcc_at, twcc, args[7]);
    packet_release(&p);
    return sent < -1 ? NULL : PyLong_FromSsize_t(sent);
}

/* retire(): the transport's `fast` is another object now. */
static PyObject *
direct_retire(Direct *self, PyObject *unused)
{
    self->retired = 1;
    Py_RETURN_NONE;
}

static PyMethodDef direct_methods[] = {
    {"send", (PyCFunction)(void (*)(void))direct_send_py, METH_FASTCALL,
     "send(packet, payload_type, sequence, timestamp, ssrc, twcc_at, twcc_id, probe_id) -> int"},
    {"retire", (PyCFunction)direct_retire, METH_NOARGS,
     "no longer the transport's `fast` (WebRtcTransport's setter calls it)"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef direct_members[] = {
    {"batch", T_OBJECT, offsetof(Direct, batch), READONLY, NULL},
    {"destination", T_OBJECT, offsetof(Direct, destination), READONLY, NULL},
    {"srtp", T_OBJECT, offsetof(Direct, srtp), READONLY, NULL},
    {"twcc_id", T_LONG, offsetof(Direct, twcc_id), 0,
     "the transport's transport-cc extension id (WebRtcTransport.twcc_id writes it)"},
    {"retired", T_INT, offsetof(Direct, retired), READONLY,
     "no longer its transport's `fast` (a consumer's memo reads `fast` again)"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject DirectType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu.native._fanout.Direct",
    .tp_basicsize = sizeof(Direct),
    .tp_dealloc = (destructor)direct_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One transport's route into a compiled send batch (WebRtcTransport.fast)",
    .tp_methods = direct_methods,
    .tp_members = direct_members,
    .tp_getset = direct_getset,
    .tp_init = (initproc)direct_init,
    .tp_new = PyType_GenericNew,
};

/* ---- The fan-out of one incoming packet -----------------------------------
 *
 * fanout(producer, consumers, data, h, codec, now, twcc_at): `Consumer.forward`
 * for each consumer; those in the plain state (below) are served here, the
 * others by their Python `forward`, in list order.  The plain state is the
 * Python plain path's preconditions: the packet's producer is the source, no
 * cut, no thumbnail, no maps, not a VP8 frame start above a thinned slot's
 * temporal limit (Python moves that slot to the mapped path), a negotiated
 * PT, not fresh (the segment has begun), no
 * extension remap, and an output whose `fast` route can take it (transport-cc
 * needs the packet's extension offset).
 */

/* The Python path for one consumer. */
static int
forward_py(PyObject *consumer, PyObject *const *rest)
{
    PyObject *args[6] = {consumer, rest[0], rest[1], rest[2], rest[3], rest[4]};
    PyObject *r = PyObject_VectorcallMethod(s_forward, args, 6 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                            NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int forward_memo(PyObject *c, Memo *memo, PyObject *producer, const Packet *p,
                        PyObject *now, Py_ssize_t twcc_at, unsigned long seq_in,
                        unsigned long ts_in, long long payload_length, long long pt);

/* One consumer in C: 1 served (or dropped as the plain path drops), 0 not plain, -1 error. */
static int
forward_plain(PyObject *c, PyObject *producer, const Packet *p, PyObject *codec,
              int vp8, long long entry_tid, PyObject *now, Py_ssize_t twcc_at,
              unsigned long seq_in, unsigned long ts_in, long long payload_length)
{
#define F(k) SLOT_AT(c, consumer_slots, k)
    for (int k = 0; k < K_N; k++)
        if (F(k) == NULL)
            return 0;  /* a field unset: Python says what that means */
    if (F(K_SOURCE) != producer)
        return 0;
    int cut = PyObject_IsTrue(F(K_CUT));
    if (cut != 0)
        return cut < 0 ? -1 : 0;
    if (F(K_THUMBNAIL) != Py_False || F(K_MAPS) != Py_None || F(K_FRESH) != Py_False ||
        F(K_EXT_MAP) != Py_None || !PyDict_CheckExact(F(K_PT_BY_CODEC)))
        return 0;
    if (vp8) {  /* a frame above the temporal limit starts: Python moves to the mapped path */
        long tid = PyLong_AsLong(F(K_TID_TARGET));
        if (tid == -1 && PyErr_Occurred())
            return -1;
        if (tid < max_tid && entry_tid > tid)
            return 0;
    }
    Memo *memo = memo_of(&F(K_MEMO));
    if (memo == NULL)
        return -1;
    long long pt;
    int found = memo_pt(memo, F(K_PT_BY_CODEC), codec, &pt);
    if (found <= 0)
        return found;
    Py_INCREF(memo); /* held while used: Python code below (an error's handler) cannot free it */
    int rc = forward_memo(c, memo, producer, p, now, twcc_at, seq_in, ts_in, payload_length, pt);
    Py_DECREF(memo);
    return rc;
#undef F
}

/* forward_plain once the payload type is known: 1 served (or dropped), 0 not plain, -1 error. */
static int
forward_memo(PyObject *c, Memo *memo, PyObject *producer, const Packet *p, PyObject *now,
             Py_ssize_t twcc_at, unsigned long seq_in, unsigned long ts_in,
             long long payload_length, long long pt)
{
#define F(k) SLOT_AT(c, consumer_slots, k)
    PyObject *output = Py_NewRef(F(K_OUTPUT));  /* held while used, whatever lookups do */
    PyObject *fast;
    if (memo->direct != NULL && memo->output == output && !((Direct *)memo->direct)->retired)
        fast = Py_NewRef(memo->direct);
    else {
        fast = PyObject_GetAttr(output, s_fast);
        if (fast == NULL) {
            Py_DECREF(output);
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return -1;
            PyErr_Clear();
            return 0;
        }
        if (Py_IS_TYPE(fast, &DirectType) && !((Direct *)fast)->retired) {
            Py_XSETREF(memo->output, Py_NewRef(output));
            Py_XSETREF(memo->direct, Py_NewRef(fast));
        }
    }
    int rc = 0;
    PyObject *probe = NULL;
    if (!Py_IS_TYPE(fast, &DirectType))
        goto done;
    long twcc = ((Direct *)fast)->twcc_id; /* the transport's, kept there by its property */
    if (twcc && twcc_at < 0)
        goto done;  /* the slow path inserts the extension */
    long long first_in, seq_offset, ts_offset, last_seq, ssrc;
    if (cell_read(&memo->cells[M_FIRST_IN], F(K_FIRST_IN), &first_in) < 0 ||
        cell_read(&memo->cells[M_SEQ_OFFSET], F(K_SEQ_OFFSET), &seq_offset) < 0 ||
        cell_read(&memo->cells[M_TS_OFFSET], F(K_TS_OFFSET), &ts_offset) < 0 ||
        cell_read(&memo->cells[M_SEQ], F(K_SEQ), &last_seq) < 0 ||
        cell_read(&memo->cells[M_SSRC], F(K_SSRC), &ssrc) < 0) {
        rc = -1;
        goto done;
    }
    rc = 1;
    if (((long long)seq_in - first_in) & 0x8000)
        goto done;  /* older than the switch to this source */
    unsigned long seq = (unsigned long)(((long long)seq_in + seq_offset) & 0xFFFF);
    unsigned long ts = (unsigned long)(((long long)ts_in + ts_offset) & 0xFFFFFFFFLL);
    if ((((long long)seq - last_seq) & 0xFFFF) < 0x8000) {
        if (cell_store(&memo->cells[M_SEQ], &F(K_SEQ), seq) < 0 ||
            slot_set_long(&F(K_TS), ts) < 0) {
            rc = -1;
            goto done;
        }
        Py_INCREF(now);
        Py_XSETREF(F(K_TIME), now);
    }
    if (pt < 0 || pt > 0xFF || ssrc < 0 || ssrc > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_ValueError, "payload type or SSRC out of range");
        rc = -1;
        goto done;
    }
    if (twcc)
        probe = Py_XNewRef(((Direct *)fast)->probe_id);
    if (direct_send((Direct *)fast, p->data, p->size, (unsigned)pt, seq, ts,
                    (unsigned long)ssrc, twcc ? twcc_at : -1, twcc, probe ? probe : Py_None) < -1 ||
        cell_add(&memo->cells[M_PACKETS], &F(K_PACKETS_SENT), 1) < 0 ||
        cell_add(&memo->cells[M_OCTETS], &F(K_OCTETS_SENT), payload_length) < 0)
        rc = -1;
done:
    Py_XDECREF(probe);
    Py_DECREF(fast);
    Py_DECREF(output);
    return rc;
#undef F
}

static int
header_fields(PyObject *h, unsigned long *seq, unsigned long *ts, long long *payload_length)
{
    PyObject *a = PyObject_GetAttr(h, s_sequence);
    PyObject *b = a ? PyObject_GetAttr(h, s_timestamp) : NULL;
    PyObject *c = b ? PyObject_GetAttr(h, s_payload_length) : NULL;
    int rc = -1;
    if (c != NULL) {
        long long vs = as_ll(a), vt = as_ll(b);
        *payload_length = as_ll(c);
        if (!PyErr_Occurred()) {
            if (vs < 0 || vs > 0xFFFF || vt < 0 || vt > 0xFFFFFFFFLL)
                PyErr_SetString(PyExc_ValueError, "RTP header field out of range");
            else {
                *seq = (unsigned long)vs;
                *ts = (unsigned long)vt;
                rc = 0;
            }
        }
    }
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(c);
    return rc;
}

/* The TID of the producer's packet when it starts a frame (`desc.tid` if
 * `desc.frame_start`), else LLONG_MIN: what `Consumer.forward` compares with
 * a thinned slot's `_tid_target` to move it to the mapped path. */
static int
vp8_entry_tid(PyObject *producer, long long *out)
{
    *out = LLONG_MIN;
    PyObject *desc = PyObject_GetAttr(producer, s_desc);
    if (desc == NULL)
        return -1;
    int rc = 0;
    if (descriptor_type != NULL && Py_TYPE(desc) == descriptor_type &&
        PyTuple_GET_SIZE(desc) > desc_start && PyTuple_GET_SIZE(desc) > desc_partition &&
        PyTuple_GET_SIZE(desc) > desc_tid) {
        /* `start and partition == 0`, read from the tuple's items */
        int start = PyObject_IsTrue(PyTuple_GET_ITEM(desc, desc_start));
        long long partition = as_ll(PyTuple_GET_ITEM(desc, desc_partition));
        long long tid = as_ll(PyTuple_GET_ITEM(desc, desc_tid));
        if (start < 0 || PyErr_Occurred())
            rc = -1;
        else if (start && partition == 0)
            *out = tid;
    } else if (desc != Py_None) {
        PyObject *tid = PyObject_GetAttr(desc, s_tid);
        PyObject *start = tid ? PyObject_GetAttr(desc, s_frame_start) : NULL;
        int starts = start ? PyObject_IsTrue(start) : -1;
        long long value = tid ? as_ll(tid) : -1;
        if (starts < 0 || PyErr_Occurred())
            rc = -1;
        else if (starts)
            *out = value;
        Py_XDECREF(tid);
        Py_XDECREF(start);
    }
    Py_DECREF(desc);
    return rc;
}

static PyObject *
fanout_fanout(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "fanout(producer, consumers, data, h, codec, now, twcc_at)");
        return NULL;
    }
    PyObject *producer = args[0], *consumers = args[1], *codec = args[4], *now = args[5];
    if (!PyList_Check(consumers) || !PyUnicode_Check(codec)) {
        PyErr_SetString(PyExc_TypeError, "consumers must be a list and codec a str");
        return NULL;
    }
    Py_ssize_t twcc_at;
    if (offset_of(args[6], &twcc_at) < 0)
        return NULL;
    unsigned long seq_in = 0, ts_in = 0;
    long long payload_length = 0;
    if (header_fields(args[3], &seq_in, &ts_in, &payload_length) < 0)
        return NULL;
    Packet p;
    if (packet_get(args[2], &p) < 0)
        return NULL;
    int vp8 = PyUnicode_CompareWithASCIIString(codec, "vp8") == 0;
    long long entry_tid = LLONG_MIN;
    if (vp8 && vp8_entry_tid(producer, &entry_tid) < 0) {
        packet_release(&p);
        return NULL;
    }
    PyObject *rest[5] = {producer, args[2], args[3], codec, now};
    int rc = 0;
    Py_INCREF(consumers);  /* attach/detach replace the list; this one stays as it is */
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(consumers); i++) {
        PyObject *c = Py_NewRef(PyList_GET_ITEM(consumers, i));
        int done = 0;
        if (consumer_slots.type != NULL && Py_IS_TYPE(c, consumer_slots.type))
            done = forward_plain(c, producer, &p, codec, vp8, entry_tid, now, twcc_at, seq_in,
                                 ts_in, payload_length);
        if (done < 0 || (done == 0 && forward_py(c, rest) < 0))
            rc = -1;
        Py_DECREF(c);
    }
    Py_DECREF(consumers);
    packet_release(&p);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* monotonic_of(stamp_ns, offset_ns, read_ns) -> float: sfu.transport.rxtime.monotonic_of's twin. */
static PyObject *
fanout_monotonic_of(PyObject *module, PyObject *args)
{
    long long stamp_ns, offset_ns, read_ns;
    if (!PyArg_ParseTuple(args, "LLL", &stamp_ns, &offset_ns, &read_ns))
        return NULL;
    if (read_ns < MAX_AGE_NS) {
        PyErr_SetString(PyExc_ValueError, "read_ns must be at least MAX_AGE_NS");
        return NULL;
    }
    return PyFloat_FromDouble((double)monotonic_ns_of(stamp_ns, offset_ns, read_ns) / 1e9);
}

static PyMethodDef module_methods[] = {
    {"monotonic_of", fanout_monotonic_of, METH_VARARGS,
     "monotonic_of(stamp_ns, offset_ns, read_ns): a kernel receive stamp on the monotonic clock"},
    {"configure", fanout_configure, METH_VARARGS,
     "configure(role, cls[, max_tid]): the slotted class whose fields the loops use, or the "
     "VP8 descriptor class"},
    {"fanout", (PyCFunction)(void (*)(void))fanout_fanout, METH_FASTCALL,
     "fanout(producer, consumers, data, h, codec, now, twcc_at): Consumer.forward for each"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fanout", "The per-copy send path in C (see the source).", -1,
    module_methods,
};

PyMODINIT_FUNC
PyInit__fanout(void)
{
    if (PyType_Ready(&SendBatchType) < 0 || PyType_Ready(&DirectType) < 0 ||
        PyType_Ready(&RecvBatchType) < 0 || PyType_Ready(&MemoType) < 0)
        return NULL;
    s_send_errors = PyUnicode_InternFromString("send_errors");
    s_oversize = PyUnicode_InternFromString("oversize");
    s_raw = PyUnicode_InternFromString("raw");
    s_ctx_address = PyUnicode_InternFromString("ctx_address");
    s_protect_address = PyUnicode_InternFromString("protect_address");
    s_idle = PyUnicode_InternFromString("idle");
    s_schedule = PyUnicode_InternFromString("schedule");
    s_flush = PyUnicode_InternFromString("flush");
    s_forward = PyUnicode_InternFromString("forward");
    s_fast = PyUnicode_InternFromString("fast");
    s_sequence = PyUnicode_InternFromString("sequence");
    s_timestamp = PyUnicode_InternFromString("timestamp");
    s_payload_length = PyUnicode_InternFromString("payload_length");
    s_desc = PyUnicode_InternFromString("desc");
    s_tid = PyUnicode_InternFromString("tid");
    s_frame_start = PyUnicode_InternFromString("frame_start");
    if (!s_send_errors || !s_oversize || !s_raw || !s_ctx_address || !s_protect_address ||
        !s_idle || !s_schedule || !s_flush || !s_forward || !s_fast ||
        !s_sequence || !s_timestamp || !s_payload_length || !s_desc || !s_tid ||
        !s_frame_start)
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
    Py_INCREF(&DirectType);
    if (PyModule_AddObject(m, "Direct", (PyObject *)&DirectType) < 0) {
        Py_DECREF(&DirectType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&RecvBatchType);
    if (PyModule_AddObject(m, "RecvBatch", (PyObject *)&RecvBatchType) < 0) {
        Py_DECREF(&RecvBatchType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Memo", (PyObject *)&MemoType) < 0) {
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
