/* sfu.native._ingress: an incoming SRTP datagram from the socket to its Producer in C
 * (issue 16).
 *
 * Two compiled twins of Python that runs once per received packet:
 *
 * - `dispatch(batch, by_addr, datagram, arrival, dropped)`: the loop of
 *   sfu.transport.udpmux.UdpMux._drain over one read batch, with the SRTP case
 *   of `UdpMux.datagram` (the selected pair's address -> its ICE agent's
 *   `on_srtp`).  Everything else (STUN, DTLS, an address nobody owns or has
 *   selected, garbage) goes to `datagram(data, addr)`, the Python method.
 * - `Inlet(transport, fallback)`: callable as `WebRtcTransport._on_srtp(data)`
 *   (it is what the transport gives its ICE agent as `on_srtp`).  An SRTP
 *   packet of an admitted SSRC is unprotected with the transport's own libsrtp
 *   session (sfu.transport.srtp.InboundSrtp, by its addresses), counted, and,
 *   when the sink is a `Participant`, parsed, its transport-wide sequence
 *   number's arrival recorded, and handed to its Producer's compiled `receive`
 *   (sfu.native._recv) -- `Participant.on_rtp` inlined.  Anything unusual
 *   (not keyed, too short or long, RTCP, an SSRC not yet admitted, a parse
 *   error, an SSRC with no producer yet) goes to `fallback(data)` (the Python
 *   `_on_srtp`) or to `sink.on_rtp(plain)` before anything was changed, so
 *   Python does exactly what it would have done.
 *
 * What is read of Python objects per datagram is remembered, each memo dropped
 * by the objects that change it (docs/media-plane.md): `Routes` (dispatch's
 * address -> handler, emptied when by_addr's dict version moves or `moved()` is
 * called by the ICE setters), the Inlet's copy of the transport's five attributes
 * (its setters call `forget()`), and of its Participant sink's five (while the
 * participant's `Stamp` holds).  The addresses of the libsrtp session are kept,
 * with a reference to the session object they came from (so it cannot be freed),
 * and used while the transport still holds that very object.  tests/test_native_ingress.py holds the two to the same results
 * on the same datagrams (hypothesis, hostile ones included).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <string.h>
#include <time.h>

#define ONE_BYTE_PROFILE 0xBEDE
#include "calls.h"
#include "rtpext.h"
#include "slots.h"

/* ---- Configuration ---------------------------------------------------------- */

enum { K_RTP_IN, K_BYTES_IN, K_SRTP_ERRORS, K_N };
static const char *counter_names[] = {"rtp_in", "bytes_in", "srtp_errors"};
static PyTypeObject *counters_type;  /* sfu.packet.counters.Counters */
static Py_ssize_t counter_offsets[K_N];
static PyTypeObject *participant_type; /* sfu.routing.participant.Participant */
enum { L_ARRIVALS, L_HIGHEST, L_START, L_UNWRAPPER, L_WINDOW, L_N };
static const char *log_names[] = {"_arrivals", "_highest", "_start", "_unwrapper", "window"};
static PyTypeObject *log_type; /* sfu.packet.twcc.ReceiveLog */
static Py_ssize_t log_offsets[L_N];
static PyObject *parse_rtp, *rtp_error, *arrival;
/* sfu.transport.rxtime.Arrival's `at`, and sfu.routing.producer.Producer's `_receive` and
 * `twcc_at`: read and written in their slots when the object is of that very class. */
static PyTypeObject *arrival_type;
static Py_ssize_t arrival_offsets[1];
static const char *arrival_names[] = {"at"};
enum { P_RECEIVE, P_TWCC_AT, P_N };
static const char *producer_names[] = {"_receive", "twcc_at"};
static PyTypeObject *producer_type;
static Py_ssize_t producer_offsets[P_N];

static PyObject *s_rx, *s_rx_direct, *s_sink, *s_counters, *s_inbound_ssrcs, *s_ctx_address,
    *s_unprotect_address, *s_on_rtp, *s_by_ssrc, *s_by_rtx_ssrc, *s_twcc_id, *s_receive_log,
    *s_at, *s_opened_at, *s_record, *s_twcc_at, *s_receive, *s_on_rtx, *s_payload_length,
    *s_bad_rtp, *s_srtp_errors, *s_inlet_stamp, *s_rtp_in, *s_bytes_in, *s_unwrap, *s_restart, *s_forget, *s_ice, *s_selected, *s_on_srtp;

/* configure(role, cls): "counters" (its rtp_in, bytes_in, srtp_errors slots are
 * written in place), "log" (sfu.packet.twcc.ReceiveLog, whose record is done on its
 * slots) or "participant" (the sink whose on_rtp is inlined). */
static PyObject *
ingress_configure(PyObject *module, PyObject *args)
{
    const char *role;
    PyObject *cls;
    if (!PyArg_ParseTuple(args, "sO!", &role, &PyType_Type, &cls))
        return NULL;
    if (strcmp(role, "counters") == 0) {
        Py_ssize_t offsets[K_N];
        if (slot_offsets(cls, counter_names, K_N, offsets, K_N) < 0)
            return NULL;
        memcpy(counter_offsets, offsets, sizeof(offsets));
        Py_XSETREF(counters_type, (PyTypeObject *)Py_NewRef(cls));
    }
    else if (strcmp(role, "log") == 0) {
        Py_ssize_t offsets[L_N];
        if (slot_offsets(cls, log_names, L_N, offsets, L_N) < 0)
            return NULL;
        memcpy(log_offsets, offsets, sizeof(offsets));
        Py_XSETREF(log_type, (PyTypeObject *)Py_NewRef(cls));
    }
    else if (strcmp(role, "participant") == 0)
        Py_XSETREF(participant_type, (PyTypeObject *)Py_NewRef(cls));
    else if (strcmp(role, "arrival") == 0) {
        Py_ssize_t offsets[1];
        if (slot_offsets(cls, arrival_names, 1, offsets, 1) < 0)
            return NULL;
        arrival_offsets[0] = offsets[0];
        Py_XSETREF(arrival_type, (PyTypeObject *)Py_NewRef(cls));
    }
    else if (strcmp(role, "producer") == 0) {
        Py_ssize_t offsets[P_N];
        if (slot_offsets(cls, producer_names, P_N, offsets, P_N) < 0)
            return NULL;
        memcpy(producer_offsets, offsets, sizeof(offsets));
        Py_XSETREF(producer_type, (PyTypeObject *)Py_NewRef(cls));
    }
    else {
        PyErr_SetString(PyExc_ValueError,
                        "role must be counters, log, participant, arrival or producer");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* bind(parse_rtp, RtpError, arrival): the parser (sfu.native._rtp.parse_rtp), its
 * exception, and sfu.transport.rxtime.ARRIVAL (whose `at` dispatch sets). */
static PyObject *
ingress_bind(PyObject *module, PyObject *args)
{
    PyObject *parse, *error, *at;
    if (!PyArg_ParseTuple(args, "OOO", &parse, &error, &at))
        return NULL;
    if (!PyCallable_Check(parse) || !PyExceptionClass_Check(error)) {
        PyErr_SetString(PyExc_TypeError, "bind(parse_rtp, RtpError, arrival)");
        return NULL;
    }
    Py_XSETREF(parse_rtp, Py_NewRef(parse));
    Py_XSETREF(rtp_error, Py_NewRef(error));
    Py_XSETREF(arrival, Py_NewRef(at));
    Py_RETURN_NONE;
}

/* ---- Helpers ---------------------------------------------------------------- */

/* obj.<name> (new reference): from slot `offset` when obj is exactly `type`. */
static PyObject *
slot_get(PyObject *obj, PyTypeObject *type, Py_ssize_t offset, PyObject *name)
{
    if (type == NULL || !Py_IS_TYPE(obj, type))
        return PyObject_GetAttr(obj, name);
    PyObject *value = *(PyObject **)((char *)obj + offset);
    if (value == NULL) /* unset: as Python */
        PyErr_SetObject(PyExc_AttributeError, name);
    return Py_XNewRef(value);
}

/* obj.<name> = value: in slot `offset` when obj is exactly `type`. */
static int
slot_put(PyObject *obj, PyTypeObject *type, Py_ssize_t offset, PyObject *name, PyObject *value)
{
    if (type == NULL || !Py_IS_TYPE(obj, type))
        return PyObject_SetAttr(obj, name, value);
    Py_XSETREF(*(PyObject **)((char *)obj + offset), Py_NewRef(value));
    return 0;
}

/* counters.<name> += delta: in the slot when `counters` is the configured class. */
static int
bump(PyObject *counters, int k, PyObject *name, Py_ssize_t delta)
{
    PyObject *d = PyLong_FromSsize_t(delta);
    if (d == NULL)
        return -1;
    int rc;
    if (counters_type != NULL && Py_IS_TYPE(counters, counters_type) && k >= 0) {
        PyObject **slot = (PyObject **)((char *)counters + counter_offsets[k]);
        PyObject *value = *slot;
        if (value == NULL) { /* unset: Python would raise AttributeError */
            PyErr_SetObject(PyExc_AttributeError, name);
            Py_DECREF(d);
            return -1;
        }
        PyObject *sum = PyNumber_Add(value, d);
        rc = sum == NULL ? -1 : 0;
        if (sum != NULL)
            Py_XSETREF(*slot, sum);
    }
    else {
        PyObject *value = PyObject_GetAttr(counters, name);
        PyObject *sum = value == NULL ? NULL : PyNumber_Add(value, d);
        Py_XDECREF(value);
        rc = sum == NULL ? -1 : PyObject_SetAttr(counters, name, sum);
        Py_XDECREF(sum);
    }
    Py_DECREF(d);
    return rc;
}

static unsigned long
be32(const unsigned char *p)
{
    return ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) | ((unsigned long)p[2] << 8) |
           p[3];
}

/* time.monotonic() (CLOCK_MONOTONIC on Linux, as CPython's). */
static PyObject *
monotonic_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyFloat_FromDouble((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
}

/* ---- Participant.on_rtp, inlined -------------------------------------------- */

/* The offset of the transport-wide sequence number `ext_id` in a parsed packet, or -1
 * (sfu.packet.twcc.transport_seq_offset). */
static Py_ssize_t
twcc_offset(const unsigned char *p, Py_ssize_t n, long ext_id)
{
    if (n < 12 || !(p[0] & 0x10))
        return -1;
    Py_ssize_t i = 12 + 4 * (Py_ssize_t)(p[0] & 0x0F);
    if (i + 4 > n)
        return -1;
    long profile = ((long)p[i] << 8) | p[i + 1];
    Py_ssize_t start = i + 4;
    Py_ssize_t end = start + 4 * (((Py_ssize_t)p[i + 2] << 8) | p[i + 3]);
    return end > n ? -1 : element_in(p, n, profile, start, end, ext_id);
}

/* ---- ReceiveLog.record ------------------------------------------------------- */

#define LOG(log, k) (*(PyObject **)((char *)(log) + log_offsets[k]))

/* a < b (1), not (0), or -1. */
static int
less(PyObject *a, PyObject *b)
{
    return PyObject_RichCompareBool(a, b, Py_LT);
}

/* What follows the unwrap in ReceiveLog.record: `seq` is the extended number. */
static int
log_book(PyObject *log, PyObject *sequence, PyObject *seq, PyObject *arrival_us)
{
    PyObject *highest = Py_NewRef(LOG(log, L_HIGHEST));
    int rc = -1, newer = highest == Py_None ? 1 : less(highest, seq);
    if (newer < 0)
        goto out;
    if (newer) {
        Py_SETREF(highest, Py_NewRef(seq));
        Py_XSETREF(LOG(log, L_HIGHEST), Py_NewRef(seq));
    }
    else {
        PyObject *floor = PyNumber_Subtract(highest, LOG(log, L_WINDOW));
        int far = floor == NULL ? -1 : less(seq, floor);
        Py_XDECREF(floor);
        if (far != 0) { /* far behind: the sender started over (or an error) */
            if (far > 0 && done(call1(log, s_restart, sequence)) == 0)
                rc = done(PyObject_CallMethodObjArgs(log, s_record, sequence, arrival_us, NULL));
            goto out;
        }
    }
    PyObject *arrivals = Py_NewRef(LOG(log, L_ARRIVALS));
    int kept;
    if (PyDict_CheckExact(arrivals))
        kept = PyDict_SetDefault(arrivals, seq, arrival_us) == NULL ? -1 : 0; /* (borrowed) */
    else
        kept = done(PyObject_CallMethod(arrivals, "setdefault", "OO", seq, arrival_us));
    if (kept < 0) {
        Py_DECREF(arrivals);
        goto out;
    }
    PyObject *start = LOG(log, L_START);
    int earlier = start == Py_None ? 1 : less(seq, start);
    if (earlier > 0)
        Py_XSETREF(LOG(log, L_START), Py_NewRef(seq));
    Py_ssize_t held = earlier < 0 ? -1 : PyObject_Length(arrivals);
    Py_DECREF(arrivals);
    if (held < 0)
        goto out;
    PyObject *count = PyLong_FromSsize_t(held), *two = PyLong_FromLong(2);
    PyObject *limit = two == NULL ? NULL : PyNumber_Multiply(two, LOG(log, L_WINDOW));
    int over = count == NULL || limit == NULL ? -1 : less(limit, count);
    Py_XDECREF(count);
    Py_XDECREF(two);
    Py_XDECREF(limit);
    if (over > 0) {
        PyObject *below = PyNumber_Subtract(highest, LOG(log, L_WINDOW));
        over = below == NULL ? -1 : done(call1(log, s_forget, below));
        Py_XDECREF(below);
    }
    rc = over < 0 ? -1 : 0;
out:
    Py_DECREF(highest);
    return rc;
}

/* log.record(sequence, arrival_us): on the slots when `log` is the configured class. */
static int
log_record(PyObject *log, PyObject *sequence, PyObject *arrival_us)
{
    int ours = log_type != NULL && Py_IS_TYPE(log, log_type);
    for (int k = 0; ours && k < L_N; k++)
        ours = LOG(log, k) != NULL;
    if (!ours) {
        PyObject *args[3] = {log, sequence, arrival_us};
        return done(
            PyObject_VectorcallMethod(s_record, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL));
    }
    PyObject *unwrapper = Py_NewRef(LOG(log, L_UNWRAPPER));
    PyObject *seq = call1(unwrapper, s_unwrap, sequence);
    Py_DECREF(unwrapper);
    if (seq == NULL)
        return -1;
    int rc = log_book(log, sequence, seq, arrival_us);
    Py_DECREF(seq);
    return rc;
}

/* ---- What the path reads of a Participant, remembered ------------------------ */

/* Stamp: a participant's change counter.  Participant's setters of the five
 * attributes below bump it (the participant owns the rule), and an inlet's memo of
 * them holds while the stamp shows the count it was read at. */
typedef struct {
    PyObject_HEAD
    Py_ssize_t count;
} Stamp;

static PyObject *
stamp_bump(Stamp *self, PyObject *unused)
{
    self->count++;
    Py_RETURN_NONE;
}

static PyMethodDef stamp_methods[] = {
    {"bump", (PyCFunction)stamp_bump, METH_NOARGS, "one of the participant's attributes changed"},
    {NULL},
};

static PyMemberDef stamp_members[] = {
    {"count", T_PYSSIZET, offsetof(Stamp, count), READONLY, "changes so far"},
    {NULL},
};

static PyTypeObject StampType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu.native._ingress.Stamp",
    .tp_basicsize = sizeof(Stamp),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Stamp(): a Participant's change counter (see Participant.inlet_stamp)",
    .tp_new = PyType_GenericNew,
    .tp_methods = stamp_methods,
    .tp_members = stamp_members,
};

enum { Q_BY_SSRC, Q_BY_RTX_SSRC, Q_TWCC_ID, Q_RECEIVE_LOG, Q_OPENED_AT, Q_N };

typedef struct {
    PyObject *sink;  /* the participant these came from (strong), or NULL */
    PyObject *stamp; /* its Stamp (strong) */
    Py_ssize_t count;
    PyObject *values[Q_N];
    Py_ssize_t reads; /* times they were read from a participant */
} PartMemo;

static void
part_forget(PartMemo *memo)
{
    Py_CLEAR(memo->sink);
    Py_CLEAR(memo->stamp);
    for (int k = 0; k < Q_N; k++)
        Py_CLEAR(memo->values[k]);
}

/* The participant's five attributes into `out` (new references): from the memo while
 * its stamp has not moved, else read (and remembered when it has a Stamp). */
static int
part_get(PartMemo *memo, PyObject *participant, PyObject **out)
{
    if (memo->sink == participant && ((Stamp *)memo->stamp)->count == memo->count) {
        for (int k = 0; k < Q_N; k++)
            out[k] = Py_NewRef(memo->values[k]);
        return 0;
    }
    static PyObject **names[Q_N] = {&s_by_ssrc, &s_by_rtx_ssrc, &s_twcc_id, &s_receive_log,
                                    &s_opened_at};
    PyObject *stamp = PyObject_GetAttr(participant, s_inlet_stamp);
    if (stamp == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
    }
    Py_ssize_t count = stamp != NULL && Py_IS_TYPE(stamp, &StampType) ? ((Stamp *)stamp)->count : -1;
    memo->reads++;
    for (int k = 0; k < Q_N; k++) {
        out[k] = PyObject_GetAttr(participant, *names[k]);
        if (out[k] == NULL) {
            while (k-- > 0)
                Py_DECREF(out[k]);
            Py_XDECREF(stamp);
            return -1;
        }
    }
    part_forget(memo);
    if (count >= 0 && ((Stamp *)stamp)->count == count) { /* (no getter changed it) */
        memo->sink = Py_NewRef(participant);
        memo->stamp = Py_NewRef(stamp);
        memo->count = count;
        for (int k = 0; k < Q_N; k++)
            memo->values[k] = Py_NewRef(out[k]);
    }
    Py_XDECREF(stamp);
    return 0;
}

/* `log.record(seq, int(((ARRIVAL.at or now) - participant.opened_at) * 1e6))`. */
static int
record_arrival(PyObject *opened, PyObject *log, int seq, PyObject *now)
{
    PyObject *at = slot_get(arrival, arrival_type, arrival_offsets[0], s_at);
    if (at == NULL)
        return -1;
    int stamped = PyObject_IsTrue(at);
    if (stamped <= 0) {
        Py_DECREF(at);
        if (stamped < 0)
            return -1;
        at = Py_NewRef(now);
    }
    PyObject *age = PyNumber_Subtract(at, opened);
    Py_DECREF(at);
    if (age == NULL)
        return -1;
    PyObject *scale = PyFloat_FromDouble(1e6);
    PyObject *us = scale == NULL ? NULL : PyNumber_Multiply(age, scale);
    Py_XDECREF(scale);
    Py_DECREF(age);
    PyObject *whole = us == NULL ? NULL : PyNumber_Long(us);
    Py_XDECREF(us);
    if (whole == NULL)
        return -1;
    PyObject *number = PyLong_FromLong(seq);
    int rc = number == NULL ? -1 : log_record(log, number, whole);
    Py_XDECREF(number);
    Py_DECREF(whole);
    return rc;
}

/* participant.counters.bad_rtp += 1 (the property: whichever transport it has now). */
static int
bad_rtp(PyObject *participant)
{
    PyObject *counters = PyObject_GetAttr(participant, s_counters);
    if (counters == NULL)
        return -1;
    int rc = bump(counters, -1, s_bad_rtp, 1);
    Py_DECREF(counters);
    return rc;
}

/* The producer's answer: its compiled receive, else (None, or none) its on_rtp. */
static int
to_producer(PyObject *participant, PyObject *producer, PyObject *plain, PyObject *h,
            PyObject *now)
{
    PyObject *receive = slot_get(producer, producer_type, producer_offsets[P_RECEIVE], s_receive);
    if (receive == NULL)
        return -1;
    PyObject *answer = NULL;
    if (receive != Py_None) {
        PyObject *args[4] = {producer, plain, h, now};
        answer = PyObject_Vectorcall(receive, args, 4, NULL);
        if (answer == Py_None)
            Py_CLEAR(answer);
        else if (answer == NULL) {
            Py_DECREF(receive);
            return -1;
        }
    }
    Py_DECREF(receive);
    if (answer == NULL)
        answer = call3(producer, s_on_rtp, plain, h, now);
    if (answer == NULL)
        return -1;
    int ok = PyObject_IsTrue(answer);
    Py_DECREF(answer);
    return ok < 0 ? -1 : ok ? 0 : bad_rtp(participant);
}

/* An RTX packet: `if h.payload_length and not producer.on_rtx(...)`: bad_rtp. */
static int
to_rtx(PyObject *participant, PyObject *producer, PyObject *plain, PyObject *h, PyObject *now)
{
    PyObject *length = PyObject_GetAttr(h, s_payload_length);
    if (length == NULL)
        return -1;
    int any = PyObject_IsTrue(length);
    Py_DECREF(length);
    if (any <= 0)
        return any;
    PyObject *answer = call3(producer, s_on_rtx, plain, h, now);
    if (answer == NULL)
        return -1;
    int ok = PyObject_IsTrue(answer);
    Py_DECREF(answer);
    return ok < 0 ? -1 : ok ? 0 : bad_rtp(participant);
}

/* The producer of a packet by its SSRC (new reference; *rtx set), or NULL: none
 * (no exception) or an error. */
static PyObject *
producer_of(PyObject **part, PyObject *ssrc, int *rtx)
{
    for (int k = 0; k < 2; k++) {
        PyObject *table = part[Q_BY_SSRC + k];
        PyObject *found = NULL;
        if (PyDict_CheckExact(table)) {
            found = PyDict_GetItemWithError(table, ssrc);
            Py_XINCREF(found);
        }
        if (found != NULL) {
            *rtx = k;
            return found;
        }
        if (PyErr_Occurred())
            return NULL;
    }
    return NULL;
}

/* The rest of Participant.on_rtp once the producer is known and nothing changed yet. */
static int
participant_book(PyObject *participant, PyObject **part, PyObject *producer, int rtx,
                 PyObject *plain, PyObject *h)
{
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(plain);
    Py_ssize_t n = PyBytes_GET_SIZE(plain);
    PyObject *now = monotonic_now();
    if (now == NULL)
        return -1;
    int rc = -1;
    Py_ssize_t twcc_at = -1;
    PyObject *twcc_id = part[Q_TWCC_ID];
    int on = PyObject_IsTrue(twcc_id);
    long ext_id = on > 0 ? PyLong_AsLong(twcc_id) : 0;
    if (on < 0 || (ext_id == -1 && PyErr_Occurred()))
        goto out;
    if (on) {
        twcc_at = twcc_offset(p, n, ext_id);
        PyObject *log = part[Q_RECEIVE_LOG];
        if (twcc_at >= 0 && log != Py_None &&
            record_arrival(part[Q_OPENED_AT], log, (p[twcc_at] << 8) | p[twcc_at + 1], now) < 0)
            goto out;
    }
    PyObject *at = PyLong_FromSsize_t(twcc_at);
    if (at == NULL ||
        slot_put(producer, producer_type, producer_offsets[P_TWCC_AT], s_twcc_at, at) < 0) {
        Py_XDECREF(at);
        goto out;
    }
    Py_DECREF(at);
    rc = rtx ? to_rtx(participant, producer, plain, h, now)
             : to_producer(participant, producer, plain, h, now);
out:
    Py_DECREF(now);
    return rc;
}

/* sink.on_rtp(plain), with Participant.on_rtp's common case in C; `ssrc` is the
 * packet's (an int: SRTP leaves the header as it was). */
static int
sink_rtp(PartMemo *memo, PyObject *sink, PyObject *plain, PyObject *ssrc)
{
    if (participant_type == NULL || parse_rtp == NULL || arrival == NULL ||
        !Py_IS_TYPE(sink, participant_type))
        return done(call1(sink, s_on_rtp, plain));
    PyObject *h = PyObject_Vectorcall(parse_rtp, &plain, 1, NULL);
    if (h == NULL) {
        if (!PyErr_ExceptionMatches(rtp_error))
            return -1;
        PyErr_Clear();
        return done(call1(sink, s_on_rtp, plain)); /* Python counts it */
    }
    int rtx = 0, rc = -1;
    PyObject *part[Q_N]; /* own references: what runs below may change the participant */
    if (part_get(memo, sink, part) < 0) {
        Py_DECREF(h);
        return -1;
    }
    PyObject *producer = producer_of(part, ssrc, &rtx);
    if (producer != NULL) {
        rc = participant_book(sink, part, producer, rtx, plain, h);
        Py_DECREF(producer);
    }
    else if (!PyErr_Occurred()) /* a new SSRC: Python learns it (or counts it) */
        rc = done(call1(sink, s_on_rtp, plain));
    for (int k = 0; k < Q_N; k++)
        Py_DECREF(part[k]);
    Py_DECREF(h);
    return rc;
}

/* ---- Inlet: WebRtcTransport._on_srtp ---------------------------------------- */

typedef int (*unprotect_fn)(void *ctx, void *srtp_hdr, int *len_ptr);

/* The largest datagram taken (sfu.transport.webrtc.MAX_DATAGRAM). */
#define MAX_DATAGRAM 1500

/* The transport's attributes the path reads, as they were when `known` was set: the
 * memo.  WebRtcTransport's setters of these five call `forget()` (the transport owns
 * the rule), so they are read again at the next packet. */
enum { T_RX, T_SINK, T_RX_DIRECT, T_SSRCS, T_COUNTERS, T_N };

typedef struct {
    PyObject_HEAD
    PyObject *transport;
    PyObject *fallback;
    PyObject *session; /* the InboundSrtp whose addresses these are, or NULL */
    unprotect_fn unprotect;
    void *context;
    Py_ssize_t delivered; /* unprotected and handed on here */
    Py_ssize_t fallbacks; /* given to `fallback` */
    PyObject *memo[T_N];  /* strong references (None included) while `known` */
    int known;
    PartMemo part;        /* what the sink (a Participant) gave, while its stamp holds */
    Py_ssize_t reads;     /* times the memo was filled from the transport */
} Inlet;

static int
inlet_init(Inlet *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"transport", "fallback", NULL};
    PyObject *transport, *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO", kwlist, &transport, &fallback))
        return -1;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "Inlet: fallback must be callable");
        return -1;
    }
    Py_XSETREF(self->transport, Py_NewRef(transport));
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    return 0;
}

static int
inlet_traverse(Inlet *self, visitproc visit, void *arg)
{
    Py_VISIT(self->transport);
    Py_VISIT(self->fallback);
    Py_VISIT(self->session);
    for (int k = 0; k < T_N; k++)
        Py_VISIT(self->memo[k]);
    Py_VISIT(self->part.sink);
    Py_VISIT(self->part.stamp);
    for (int k = 0; k < Q_N; k++)
        Py_VISIT(self->part.values[k]);
    return 0;
}

static void
inlet_forget(Inlet *self)
{
    self->known = 0;
    for (int k = 0; k < T_N; k++)
        Py_CLEAR(self->memo[k]);
}

static int
inlet_clear(Inlet *self)
{
    Py_CLEAR(self->transport);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->session);
    inlet_forget(self);
    part_forget(&self->part);
    return 0;
}

static void
inlet_dealloc(Inlet *self)
{
    PyObject_GC_UnTrack(self);
    inlet_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
inlet_fallback(Inlet *self, PyObject *data)
{
    self->fallbacks++;
    return done(PyObject_CallOneArg(self->fallback, data));
}

static void *
address_of(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL)
        return NULL;
    void *address = PyLong_Check(value) ? PyLong_AsVoidPtr(value) : NULL;
    Py_DECREF(value);
    return address;
}

/* Whether `session` (the transport's _rx_direct) is one we can call; its addresses kept. */
static int
inlet_adopt(Inlet *self, PyObject *session)
{
    if (session == self->session)
        return 1;
    if (session == Py_None)
        return 0;
    void *function = address_of(session, s_unprotect_address);
    void *context = function == NULL ? NULL : address_of(session, s_ctx_address);
    if (context == NULL) {
        PyErr_Clear(); /* not an InboundSrtp of ours: Python's path */
        return 0;
    }
    Py_XSETREF(self->session, Py_NewRef(session));
    self->unprotect = (unprotect_fn)function;
    self->context = context;
    return 1;
}

/* The plain packet (new bytes), or NULL: libsrtp refused it (no exception) or an error. */
static PyObject *
unprotect(Inlet *self, const char *data, Py_ssize_t size)
{
    /* Unprotected here, then one bytes of the plain length (no shrinking realloc). */
    _Alignas(16) char buffer[MAX_DATAGRAM];
    if (size > MAX_DATAGRAM)
        return NULL;
    memcpy(buffer, data, (size_t)size);
    int length = (int)size;
    if (self->unprotect(self->context, buffer, &length) != 0 || length < 0 || length > size)
        return NULL;
    return PyBytes_FromStringAndSize(buffer, length);
}

/* The memo filled from the transport (0), or -1 on an error (an attribute missing). */
static int
inlet_learn(Inlet *self)
{
    static PyObject **names[T_N] = {&s_rx, &s_sink, &s_rx_direct, &s_inbound_ssrcs, &s_counters};
    PyObject *values[T_N];
    for (int k = 0; k < T_N; k++) {
        values[k] = PyObject_GetAttr(self->transport, *names[k]);
        if (values[k] == NULL) {
            while (k-- > 0)
                Py_DECREF(values[k]);
            return -1;
        }
    }
    inlet_forget(self);
    memcpy(self->memo, values, sizeof(values));
    self->known = 1;
    self->reads++;
    return 0;
}

/* What WebRtcTransport._on_srtp(data) does; 0, or -1 with the exception set. */
static int
inlet_deliver(Inlet *self, PyObject *data)
{
    if (self->transport == NULL || !PyBytes_CheckExact(data))
        return self->fallback == NULL ? 0 : inlet_fallback(self, data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(data);
    if (size < 12 || size > MAX_DATAGRAM || (p[1] > 191 && p[1] < 224))
        return inlet_fallback(self, data); /* too short, too long, RTCP: Python's */
    if (!self->known && inlet_learn(self) < 0)
        return -1;
    /* Own references: what runs below (Python's on_rtp, a setter's forget()) may
     * empty the memo. */
    PyObject *sink = Py_NewRef(self->memo[T_SINK]);
    PyObject *counters = Py_NewRef(self->memo[T_COUNTERS]);
    PyObject *ssrcs = self->memo[T_SSRCS], *key = NULL, *plain = NULL;
    int go = self->memo[T_RX] != Py_None && sink != Py_None && counters != Py_None &&
             PyAnySet_Check(ssrcs);
    if (go)
        go = inlet_adopt(self, self->memo[T_RX_DIRECT]);
    if (go > 0) {
        key = PyLong_FromUnsignedLong(be32(p + 8));
        go = key == NULL ? -1 : PySet_Contains(ssrcs, key); /* not yet admitted: Python's */
    }
    int rc = -1;
    if (go == 0)
        rc = inlet_fallback(self, data);
    if (go <= 0)
        goto out;
    /* From here on this is the packet's path: no going back to Python. */
    plain = unprotect(self, (const char *)p, size);
    if (plain == NULL) {
        rc = PyErr_Occurred() ? -1 : bump(counters, K_SRTP_ERRORS, s_srtp_errors, 1);
        goto out;
    }
    if (bump(counters, K_RTP_IN, s_rtp_in, 1) < 0 ||
        bump(counters, K_BYTES_IN, s_bytes_in, size) < 0)
        goto out;
    self->delivered++;
    rc = sink_rtp(&self->part, sink, plain, key);
out:
    Py_DECREF(sink);
    Py_DECREF(counters);
    Py_XDECREF(key);
    Py_XDECREF(plain);
    return rc;
}

/* forget(): the transport changed one of the attributes the memo holds. */
static PyObject *
inlet_forget_method(Inlet *self, PyObject *unused)
{
    inlet_forget(self);
    Py_RETURN_NONE;
}

/* close(): the transport closed; drop it, its fallback and the memo, so that the
 * transport <-> inlet cycle is gone and a departed participant is freed at once,
 * not at the next full collection.  Datagrams that still come are dropped. */
static PyObject *
inlet_close_method(Inlet *self, PyObject *unused)
{
    inlet_clear(self);
    Py_RETURN_NONE;
}

static PyMethodDef inlet_methods[] = {
    {"forget", (PyCFunction)inlet_forget_method, METH_NOARGS,
     "forget(): read the transport's _rx, _sink, _rx_direct, inbound_ssrcs, counters again"},
    {"close", (PyCFunction)inlet_close_method, METH_NOARGS,
     "close(): the transport closed: drop every reference (later datagrams are dropped)"},
    {NULL},
};

static PyObject *
inlet_call(Inlet *self, PyObject *args, PyObject *kwds)
{
    PyObject *data;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Inlet(data) takes no keywords");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O", &data))
        return NULL;
    if (inlet_deliver(self, data) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMemberDef inlet_members[] = {
    {"delivered", T_PYSSIZET, offsetof(Inlet, delivered), READONLY,
     "datagrams unprotected and handed on in C"},
    {"fallbacks", T_PYSSIZET, offsetof(Inlet, fallbacks), READONLY,
     "datagrams given to the Python fallback"},
    {"reads", T_PYSSIZET, offsetof(Inlet, reads), READONLY,
     "times the transport's attributes were read into the memo"},
    {"participant_reads", T_PYSSIZET, offsetof(Inlet, part) + offsetof(PartMemo, reads),
     READONLY, "times the sink's (a Participant's) attributes were read"},
    {NULL},
};

static PyTypeObject InletType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu.native._ingress.Inlet",
    .tp_basicsize = sizeof(Inlet),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Inlet(transport, fallback): WebRtcTransport._on_srtp in C (see the source)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)inlet_init,
    .tp_dealloc = (destructor)inlet_dealloc,
    .tp_traverse = (traverseproc)inlet_traverse,
    .tp_clear = (inquiry)inlet_clear,
    .tp_call = (ternaryfunc)inlet_call,
    .tp_members = inlet_members,
    .tp_methods = inlet_methods,
};

/* ---- dispatch: UdpMux._drain's loop and datagram's SRTP case ---------------- */

/* The selected pair's on_srtp for `addr` (new reference), or NULL: none (no
 * exception; `datagram` decides) or an error. */
static PyObject *
selected_handler(PyObject *by_addr, PyObject *addr)
{
    PyObject *endpoint = PyDict_GetItemWithError(by_addr, addr);
    if (endpoint == NULL)
        return NULL;
    Py_INCREF(endpoint);
    PyObject *handler = NULL;
    PyObject *ice = PyObject_GetAttr(endpoint, s_ice);
    PyObject *selected = ice == NULL ? NULL : PyObject_GetAttr(ice, s_selected);
    if (selected != NULL && PyTuple_CheckExact(selected) && PyTuple_GET_SIZE(selected) == 2 &&
        PyTuple_GET_ITEM(selected, 0) == endpoint) {
        int same = PyObject_RichCompareBool(PyTuple_GET_ITEM(selected, 1), addr, Py_EQ);
        if (same > 0)
            handler = PyObject_GetAttr(ice, s_on_srtp);
    }
    Py_XDECREF(selected);
    Py_XDECREF(ice);
    Py_DECREF(endpoint);
    return handler;
}

/* ---- Routes: which handler takes an address's SRTP, remembered ---------------- */

/* Bumped by `moved()`: an ICE agent's `selected` or `on_srtp`, or an endpoint's `ice`,
 * changed (their setters call it; sfu.transport.udpmux.routes_moved).  A change of
 * `by_addr` itself shows in its dict version tag. */
static uint64_t epoch = 1;

/* addr -> the handler `selected_handler` gave, valid while `by_addr` is the same dict
 * at the same version and `epoch` has not moved; else emptied and filled again. */
typedef struct {
    PyObject_HEAD
    PyObject *table;   /* dict */
    PyObject *by_addr; /* the dict it was filled from (a strong reference), or NULL */
    uint64_t version;
    uint64_t epoch;
    Py_ssize_t hits, misses, drops;
} Routes;

static int
routes_traverse(Routes *self, visitproc visit, void *arg)
{
    Py_VISIT(self->table);
    Py_VISIT(self->by_addr);
    return 0;
}

static int
routes_clear(Routes *self)
{
    Py_CLEAR(self->table);
    Py_CLEAR(self->by_addr);
    return 0;
}

static void
routes_dealloc(Routes *self)
{
    PyObject_GC_UnTrack(self);
    routes_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
routes_init(Routes *self, PyObject *args, PyObject *kwds)
{
    if (!PyArg_ParseTuple(args, ":Routes"))
        return -1;
    Py_XSETREF(self->table, PyDict_New());
    return self->table == NULL ? -1 : 0;
}

/* The handler for `addr` (new reference), or NULL: none (no exception) or an error. */
static PyObject *
routes_handler(Routes *self, PyObject *by_addr, PyObject *addr)
{
    uint64_t version = ((PyDictObject *)by_addr)->ma_version_tag;
    if (self->table == NULL)
        return selected_handler(by_addr, addr);
    if (by_addr != self->by_addr || version != self->version || epoch != self->epoch) {
        if (PyDict_GET_SIZE(self->table))
            self->drops++;
        PyDict_Clear(self->table);
        Py_XSETREF(self->by_addr, Py_NewRef(by_addr));
        self->version = version;
        self->epoch = epoch;
    }
    PyObject *handler = PyDict_GetItemWithError(self->table, addr);
    if (handler != NULL) {
        self->hits++;
        return Py_NewRef(handler);
    }
    if (PyErr_Occurred())
        return NULL;
    self->misses++;
    handler = selected_handler(by_addr, addr);
    /* Kept only if nothing moved meanwhile (the lookups ran no Python that could). */
    if (handler != NULL && ((PyDictObject *)by_addr)->ma_version_tag == version &&
        epoch == self->epoch && PyDict_SetItem(self->table, addr, handler) < 0) {
        Py_DECREF(handler);
        return NULL;
    }
    return handler;
}

/* moved(): an ICE selection, an agent's on_srtp or an endpoint's agent changed. */
static PyObject *
ingress_moved(PyObject *module, PyObject *unused)
{
    epoch++;
    Py_RETURN_NONE;
}

static PyMemberDef routes_members[] = {
    {"hits", T_PYSSIZET, offsetof(Routes, hits), READONLY, "datagrams routed from the memo"},
    {"misses", T_PYSSIZET, offsetof(Routes, misses), READONLY, "lookups through by_addr"},
    {"drops", T_PYSSIZET, offsetof(Routes, drops), READONLY, "times a filled memo was emptied"},
    {NULL},
};

static PyObject *
routes_len(Routes *self, PyObject *unused)
{
    return PyLong_FromSsize_t(self->table == NULL ? 0 : PyDict_GET_SIZE(self->table));
}

/* forget(): an endpoint left the mux; empty the memo now (it would otherwise keep the
 * departed's handler, so its transport and participant, until the next SRTP datagram). */
static PyObject *
routes_forget(Routes *self, PyObject *unused)
{
    if (self->table != NULL && PyDict_GET_SIZE(self->table)) {
        self->drops++;
        PyDict_Clear(self->table);
    }
    Py_RETURN_NONE;
}

static PyMethodDef routes_methods[] = {
    {"size", (PyCFunction)routes_len, METH_NOARGS, "addresses remembered"},
    {"forget", (PyCFunction)routes_forget, METH_NOARGS, "forget(): empty the memo now"},
    {NULL},
};

static PyTypeObject RoutesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu.native._ingress.Routes",
    .tp_basicsize = sizeof(Routes),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Routes(): dispatch's memo of which handler takes an address's SRTP",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)routes_init,
    .tp_dealloc = (destructor)routes_dealloc,
    .tp_traverse = (traverseproc)routes_traverse,
    .tp_clear = (inquiry)routes_clear,
    .tp_members = routes_members,
    .tp_methods = routes_methods,
};

/* One SRTP datagram from a selected address: 1 handled, 0 `datagram`'s, -1 an error. */
static int
srtp_datagram(PyObject *by_addr, PyObject *data, PyObject *addr, Routes *routes)
{
    PyObject *handler = routes != NULL ? routes_handler(routes, by_addr, addr)
                                       : selected_handler(by_addr, addr);
    if (handler == NULL)
        return PyErr_Occurred() ? -1 : 0;
    int rc = Py_IS_TYPE(handler, &InletType)
                 ? inlet_deliver((Inlet *)handler, data)
                 : done(PyObject_CallOneArg(handler, data));
    Py_DECREF(handler);
    return rc < 0 ? -1 : 1;
}

/* As datagram's `except Exception`: dropped(addr, exc) counts and logs it. */
static int
failed(PyObject *dropped, PyObject *addr)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1; /* KeyboardInterrupt and the like go on up */
    PyObject *type, *exc, *traceback;
    PyErr_Fetch(&type, &exc, &traceback);
    PyErr_NormalizeException(&type, &exc, &traceback);
    if (exc != NULL && traceback != NULL)
        PyException_SetTraceback(exc, traceback);
    PyObject *args[2] = {addr, exc != NULL ? exc : Py_None};
    int rc = done(PyObject_Vectorcall(dropped, args, 2, NULL));
    Py_XDECREF(type);
    Py_XDECREF(exc);
    Py_XDECREF(traceback);
    return rc;
}

/* dispatch(batch, by_addr, datagram, arrival, dropped[, routes]) */
static PyObject *
ingress_dispatch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 5 || nargs > 6 || !PyList_Check(args[0]) || !PyDict_Check(args[1]) ||
        (nargs == 6 && args[5] != Py_None && !Py_IS_TYPE(args[5], &RoutesType))) {
        PyErr_SetString(PyExc_TypeError, "dispatch(batch: list, by_addr: dict, datagram, "
                                         "arrival, dropped, routes: Routes | None = None)");
        return NULL;
    }
    Routes *routes = nargs == 6 && args[5] != Py_None ? (Routes *)args[5] : NULL;
    PyObject *batch = args[0], *by_addr = args[1], *datagram = args[2], *at = args[3];
    PyObject *dropped = args[4];
    Py_INCREF(batch);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(batch); i++) {
        PyObject *item = PyList_GET_ITEM(batch, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_SetString(PyExc_TypeError, "a batch item is (data, addr, arrival)");
            goto error;
        }
        Py_INCREF(item);
        PyObject *data = PyTuple_GET_ITEM(item, 0), *addr = PyTuple_GET_ITEM(item, 1);
        int rc = slot_put(at, arrival_type, arrival_offsets[0], s_at, PyTuple_GET_ITEM(item, 2));
        int handled = 0;
        if (rc == 0 && PyBytes_CheckExact(data) && PyBytes_GET_SIZE(data) > 0) {
            unsigned char first = (unsigned char)PyBytes_AS_STRING(data)[0];
            if (127 < first && first < 192) { /* SRTP or SRTCP (RFC 7983) */
                handled = srtp_datagram(by_addr, data, addr, routes);
                if (handled < 0) {
                    rc = failed(dropped, addr);
                    handled = 1;
                }
            }
        }
        if (rc == 0 && !handled) {
            PyObject *pair[2] = {data, addr};
            rc = done(PyObject_Vectorcall(datagram, pair, 2, NULL));
        }
        Py_DECREF(item);
        if (rc < 0)
            goto error;
    }
    Py_DECREF(batch);
    Py_RETURN_NONE;
error:
    Py_DECREF(batch);
    return NULL;
}

/* ---- Module ------------------------------------------------------------------ */

static PyMethodDef module_methods[] = {
    {"configure", ingress_configure, METH_VARARGS,
     "configure(role, cls): the Counters class (role counters) or the Participant class"},
    {"bind", ingress_bind, METH_VARARGS, "bind(parse_rtp, RtpError, arrival)"},
    {"dispatch", (PyCFunction)(void (*)(void))ingress_dispatch, METH_FASTCALL,
     "dispatch(batch, by_addr, datagram, arrival, dropped[, routes]): UdpMux._drain's loop in C"},
    {"moved", ingress_moved, METH_NOARGS,
     "moved(): an ICE selection, on_srtp or endpoint agent changed (Routes forget)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ingress",
    "An incoming SRTP datagram from the socket to its Producer in C (see the source).", -1,
    module_methods,
};

static int
intern(PyObject **out, const char *name)
{
    *out = PyUnicode_InternFromString(name);
    return *out == NULL ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__ingress(void)
{
    if (intern(&s_rx, "_rx") || intern(&s_rx_direct, "_rx_direct") || intern(&s_sink, "_sink") ||
        intern(&s_counters, "counters") || intern(&s_inbound_ssrcs, "inbound_ssrcs") ||
        intern(&s_ctx_address, "ctx_address") ||
        intern(&s_unprotect_address, "unprotect_address") || intern(&s_on_rtp, "on_rtp") ||
        intern(&s_by_ssrc, "by_ssrc") || intern(&s_by_rtx_ssrc, "by_rtx_ssrc") ||
        intern(&s_twcc_id, "twcc_id") || intern(&s_receive_log, "receive_log") ||
        intern(&s_at, "at") || intern(&s_opened_at, "opened_at") || intern(&s_record, "record") ||
        intern(&s_twcc_at, "twcc_at") || intern(&s_receive, "_receive") ||
        intern(&s_on_rtx, "on_rtx") || intern(&s_payload_length, "payload_length") ||
        intern(&s_bad_rtp, "bad_rtp") || intern(&s_srtp_errors, "srtp_errors") ||
        intern(&s_rtp_in, "rtp_in") || intern(&s_bytes_in, "bytes_in") ||
        intern(&s_unwrap, "unwrap") || intern(&s_restart, "_restart") ||
        intern(&s_forget, "_forget") || intern(&s_inlet_stamp, "inlet_stamp") ||
        intern(&s_ice, "ice") || intern(&s_selected, "selected") || intern(&s_on_srtp, "on_srtp"))
        return NULL;
    if (PyType_Ready(&InletType) < 0 || PyType_Ready(&RoutesType) < 0 ||
        PyType_Ready(&StampType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Inlet", (PyObject *)&InletType) < 0 ||
        PyModule_AddObjectRef(m, "Routes", (PyObject *)&RoutesType) < 0 ||
        PyModule_AddObjectRef(m, "Stamp", (PyObject *)&StampType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
