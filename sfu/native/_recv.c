/* sfu.native._recv: recvmmsg for the shared UDP socket, in C (issue 16).
 *
 * RecvBatch is the compiled twin of sfu.transport.mmsg.RecvBatch: the same
 * constructor (fd, capacity), the same `read()` answer (a list of
 * (bytes, (host, port)) for what is waiting now, [] when nothing is, OSError
 * for a real error) and the same `calls` count, held to it by
 * tests/test_native_recv.py.  It owns one preallocated buffer of `capacity`
 * slots of RECV_SLOT bytes with their sockaddrs, iovecs and mmsghdrs; a read
 * is one recvmmsg call, then one bytes object per datagram (its received
 * length: a datagram larger than a slot arrives cut to RECV_SLOT, as in the
 * Python twin, and the transport drops it as oversize).
 *
 * Addresses: the (host, port) tuple of a source is made once (inet_ntop, as
 * Python's socket.inet_ntop) and kept in a dict keyed by the raw address,
 * emptied when it passes 4096 entries, as the Python twin does; the same
 * source gives the same tuple object.
 *
 * Hostile input: the kernel writes at most RECV_SLOT bytes per slot and at
 * most sizeof(struct sockaddr_storage) per name; every length it reports is
 * checked against those before it is used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define RECV_SLOT 2048 /* as mmsg.RECV_SLOT */
#define MAX_CAPACITY 1024
#define MAX_ADDRESSES 4096

typedef struct {
    PyObject_HEAD
    int fd;
    Py_ssize_t capacity;
    Py_ssize_t calls;
    unsigned char *buffer;            /* capacity * RECV_SLOT */
    struct sockaddr_storage *names;   /* capacity */
    struct iovec *iov;                /* capacity */
    struct mmsghdr *msgs;             /* capacity */
    PyObject *addresses;              /* raw address key -> (host, port) */
} RecvBatch;

static void
batch_free_buffers(RecvBatch *self)
{
    PyMem_Free(self->buffer);
    PyMem_Free(self->names);
    PyMem_Free(self->iov);
    PyMem_Free(self->msgs);
    self->buffer = NULL;
    self->names = NULL;
    self->iov = NULL;
    self->msgs = NULL;
}

static int
batch_init(RecvBatch *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"fd", "capacity", NULL};
    int fd;
    Py_ssize_t capacity = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "i|n", keywords, &fd, &capacity))
        return -1;
    if (capacity < 1 || capacity > MAX_CAPACITY) {
        PyErr_Format(PyExc_ValueError, "capacity must be 1..%d", MAX_CAPACITY);
        return -1;
    }
    batch_free_buffers(self);
    self->fd = fd;
    self->capacity = capacity;
    self->calls = 0;
    self->buffer = PyMem_Calloc((size_t)capacity, RECV_SLOT);
    self->names = PyMem_Calloc((size_t)capacity, sizeof(struct sockaddr_storage));
    self->iov = PyMem_Calloc((size_t)capacity, sizeof(struct iovec));
    self->msgs = PyMem_Calloc((size_t)capacity, sizeof(struct mmsghdr));
    if (!self->buffer || !self->names || !self->iov || !self->msgs) {
        batch_free_buffers(self);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < capacity; i++) {
        self->iov[i].iov_base = self->buffer + i * RECV_SLOT;
        self->iov[i].iov_len = RECV_SLOT;
        self->msgs[i].msg_hdr.msg_iov = &self->iov[i];
        self->msgs[i].msg_hdr.msg_iovlen = 1;
        self->msgs[i].msg_hdr.msg_name = &self->names[i];
    }
    Py_XSETREF(self->addresses, PyDict_New());
    return self->addresses == NULL ? -1 : 0;
}

static void
batch_dealloc(RecvBatch *self)
{
    batch_free_buffers(self);
    Py_XDECREF(self->addresses);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* (host, port) of a sockaddr the kernel wrote (namelen bytes of it), or NULL. */
static PyObject *
make_address(const struct sockaddr_storage *name, socklen_t namelen)
{
    char host[INET6_ADDRSTRLEN];
    int port;
    if (namelen >= sizeof(struct sockaddr_in) && name->ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)name;
        if (inet_ntop(AF_INET, &in4->sin_addr, host, sizeof host) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        port = ntohs(in4->sin_port);
    }
    else if (namelen >= sizeof(struct sockaddr_in6) && name->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)name;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        port = ntohs(in6->sin6_port);
    }
    else {
        PyErr_Format(PyExc_ValueError, "datagram from an address of family %d (%u bytes)",
                     (int)name->ss_family, (unsigned)namelen);
        return NULL;
    }
    return Py_BuildValue("(si)", host, port);
}

/* The dict key of a source: its family, port and address bytes. */
static PyObject *
address_key(const struct sockaddr_storage *name, socklen_t namelen)
{
    if (namelen >= sizeof(struct sockaddr_in) && name->ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)name;
        unsigned long long key = ((unsigned long long)ntohl(in4->sin_addr.s_addr) << 16) |
                                 ntohs(in4->sin_port);
        return PyLong_FromUnsignedLongLong(key);
    }
    if (namelen >= sizeof(struct sockaddr_in6) && name->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)name;
        char raw[18];
        memcpy(raw, &in6->sin6_addr, 16);
        memcpy(raw + 16, &in6->sin6_port, 2);
        return PyBytes_FromStringAndSize(raw, sizeof raw);
    }
    return make_address(name, namelen); /* raises ValueError */
}

static PyObject *
address_of(RecvBatch *self, const struct sockaddr_storage *name, socklen_t namelen)
{
    PyObject *key = address_key(name, namelen);
    if (key == NULL)
        return NULL;
    PyObject *addr = PyDict_GetItemWithError(self->addresses, key);
    if (addr != NULL) {
        Py_DECREF(key);
        return Py_NewRef(addr);
    }
    if (PyErr_Occurred() || (addr = make_address(name, namelen)) == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    if (PyDict_GET_SIZE(self->addresses) >= MAX_ADDRESSES)
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
batch_read(RecvBatch *self, PyObject *unused)
{
    if (self->msgs == NULL) {
        PyErr_SetString(PyExc_ValueError, "RecvBatch is not initialised");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->capacity; i++)
        self->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
    self->calls += 1;
    int n = recvmmsg(self->fd, self->msgs, (unsigned int)self->capacity, MSG_DONTWAIT, NULL);
    if (n < 0) {
        int code = errno;
        if (code == EAGAIN || code == EWOULDBLOCK || code == EINTR)
            return PyList_New(0);
        errno = code;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (n > self->capacity)
        n = (int)self->capacity;
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        struct msghdr *header = &self->msgs[i].msg_hdr;
        unsigned int size = self->msgs[i].msg_len;
        if (size > RECV_SLOT)
            size = RECV_SLOT;
        socklen_t namelen = header->msg_namelen;
        if (namelen > sizeof(struct sockaddr_storage))
            namelen = sizeof(struct sockaddr_storage);
        PyObject *addr = address_of(self, &self->names[i], namelen);
        if (addr == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyObject *data =
            PyBytes_FromStringAndSize((const char *)self->buffer + (Py_ssize_t)i * RECV_SLOT, size);
        PyObject *item = data == NULL ? NULL : PyTuple_New(2);
        if (item == NULL) {
            Py_XDECREF(data);
            Py_DECREF(addr);
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(item, 0, data);
        PyTuple_SET_ITEM(item, 1, addr);
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

static PyMethodDef batch_methods[] = {
    {"read", (PyCFunction)batch_read, METH_NOARGS,
     "read() -> list[(bytes, (host, port))]: what is waiting now ([] when nothing is)"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef batch_members[] = {
    {"fd", T_INT, offsetof(RecvBatch, fd), 0, "the socket read"},
    {"capacity", T_PYSSIZET, offsetof(RecvBatch, capacity), READONLY, "datagrams per call"},
    {"calls", T_PYSSIZET, offsetof(RecvBatch, calls), 0, "recvmmsg system calls made"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RecvBatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu.native._recv.RecvBatch",
    .tp_basicsize = sizeof(RecvBatch),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "RecvBatch(fd, capacity=64): recvmmsg into preallocated slots (see _recv.c)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)batch_init,
    .tp_dealloc = (destructor)batch_dealloc,
    .tp_methods = batch_methods,
    .tp_members = batch_members,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "sfu.native._recv",
    "recvmmsg for the shared UDP socket (see _recv.c).", -1, NULL,
};

PyMODINIT_FUNC
PyInit__recv(void)
{
    if (PyType_Ready(&RecvBatchType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "RecvBatch", (PyObject *)&RecvBatchType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
