/* sfu.native._recv: a Producer's per-packet work in one C call (issue 16).
 *
 * `receive(producer, data, h, now)` is the compiled twin of
 * sfu.routing.producer.Producer.on_rtp's Python path: first `_book`,
 * everything done with an incoming packet before the fan-out (payload type
 * to codec, sequence unwrap, newest, last media time, receive statistics,
 * NACK of a gap, retransmission cache, RFC 6464 audio level, VP8 descriptor,
 * rate meter, RED), then the fan-out (`sfu.native._fanout.fanout`, or each
 * consumer's `forward`) and the relay, in the same order, with the same
 * effects and the same answer: True, or False for an unknown payload type.
 * It answers None, having changed nothing, when an object is not of the
 * class it was configured with (a test double, a subclass): Python runs.
 *
 * One source of truth: the Python classes keep their fields.  `configure`
 * resolves the `__slots__` member offsets of the fields below once, and the
 * plain cases are done on those fields in place (the cache's three lists, the
 * meter's current window, the NACK generator's newest number), as Python's
 * own slot access does.  Everything else is a call of the Python object's own
 * method (the unwrapper, the statistics, a gap for the NACK generator, a
 * cache lookup of a repeat, a new meter window, a key frame's size, RED
 * blocks, the level sink, send_nack), so it behaves exactly as Python would,
 * exceptions included.  tests/test_native_receive.py holds the two to the same
 * results on the same packets (hypothesis, hostile sequences included).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <string.h>

#include "calls.h"
#include "slots.h"

/* ---- Slotted classes ------------------------------------------------------ */

enum {
    P_CODEC_BY_PT, P_UNWRAPPER, P_STATS, P_NEWEST, P_LAST_MEDIA, P_NACK, P_CACHE, P_LEVEL_ID,
    P_VAD_SEEN, P_LEVEL_SINK, P_OWNER, P_DESC, P_METER, P_FANOUT, P_CONSUMERS, P_TWCC_AT,
    P_RELAY, P_N
};
static const char *producer_names[] = {
    "codec_by_pt", "_unwrapper", "stats", "newest", "last_media", "nack", "_cache", "_level_id",
    "_vad_seen", "level_sink", "owner", "desc", "meter", "_fanout", "consumers", "twcc_at",
    "relay",
};
enum {
    H_PT, H_SEQ, H_TS, H_EXT_PROFILE, H_EXT_OFFSET, H_EXT_LENGTH, H_PAYLOAD_OFFSET,
    H_PAYLOAD_LENGTH, H_N
};
static const char *header_names[] = {
    "payload_type", "sequence", "timestamp", "ext_profile", "ext_offset", "ext_length",
    "payload_offset", "payload_length",
};
enum { C_SEQS, C_PACKETS, C_TIMES, C_SIZE, C_N };
static const char *cache_names[] = {"_seqs", "_packets", "_times", "_size"};
enum { M_CURRENT, M_START, M_TOP, M_N };
static const char *meter_names[] = {"_current", "_start", "top"};
enum { N_NEWEST, N_N };
static const char *nack_names[] = {"_newest"};

#define MAX_FIELDS P_N

typedef struct {
    PyTypeObject *type; /* NULL until configured */
    int n;
    Py_ssize_t offsets[MAX_FIELDS];
} SlotTable;

static SlotTable producer_slots, header_slots, cache_slots, meter_slots, nack_slots;

#define SLOT(obj, table, k) (*(PyObject **)((char *)(obj) + (table).offsets[k]))

/* bind(): the compiled parsers (sfu.native._rtp), RtpError, the VP8 descriptor
 * class with its `tid` and `keyframe` indices, RATE_WINDOW_S, and the most rows
 * a speaker's level log takes (sfu.policy.speaker.LOG_MAX). */
static PyObject *read_vp8_at, *find_extension, *rtp_error;
static PyTypeObject *descriptor_type;
static Py_ssize_t tid_index = -1, keyframe_index = -1;
static double rate_window = 0.0;
static Py_ssize_t log_max = 0;

static PyObject *s_forward, *s_rtp, *s_unwrap, *s_max_seq, *s_add, *s_send_nack, *s_get, *s_store, *s_keyframe,
    *s_read_red, *s_red;

static int
resolve(SlotTable *table, PyObject *cls, const char **names, int n)
{
    if (slot_offsets(cls, names, n, table->offsets, MAX_FIELDS) < 0)
        return -1;
    table->n = n;
    Py_INCREF(cls);
    Py_XSETREF(table->type, (PyTypeObject *)cls);
    return 0;
}

/* configure(role, cls): role "producer", "header", "cache", "meter" or "nack". */
static PyObject *
recv_configure(PyObject *module, PyObject *args)
{
    const char *role;
    PyObject *cls;
    if (!PyArg_ParseTuple(args, "sO", &role, &cls))
        return NULL;
    int rc;
    if (strcmp(role, "producer") == 0)
        rc = resolve(&producer_slots, cls, producer_names, P_N);
    else if (strcmp(role, "header") == 0)
        rc = resolve(&header_slots, cls, header_names, H_N);
    else if (strcmp(role, "cache") == 0)
        rc = resolve(&cache_slots, cls, cache_names, C_N);
    else if (strcmp(role, "meter") == 0)
        rc = resolve(&meter_slots, cls, meter_names, M_N);
    else if (strcmp(role, "nack") == 0)
        rc = resolve(&nack_slots, cls, nack_names, N_N);
    else {
        PyErr_SetString(PyExc_ValueError, "role must be producer, header, cache, meter or nack");
        return NULL;
    }
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* bind(read_vp8_at, find_extension, RtpError, Vp8Descriptor, tid_index, keyframe_index, window,
 *      log_max) */
static PyObject *
recv_bind(PyObject *module, PyObject *args)
{
    PyObject *vp8, *find, *error, *descriptor;
    Py_ssize_t tid, keyframe;
    double window;
    Py_ssize_t most;
    if (!PyArg_ParseTuple(args, "OOOOnndn", &vp8, &find, &error, &descriptor, &tid, &keyframe,
                          &window, &most))
        return NULL;
    if (!PyCallable_Check(vp8) || !PyCallable_Check(find) || !PyExceptionClass_Check(error) ||
        !PyType_Check(descriptor) || !PyType_IsSubtype((PyTypeObject *)descriptor, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "bind wants two functions, an exception and a tuple class");
        return NULL;
    }
    if (tid < 0 || keyframe < 0 || !(window > 0.0) || most < 0) {
        PyErr_SetString(PyExc_ValueError,
                        "field indices and log_max must be >= 0 and the window > 0");
        return NULL;
    }
    Py_XSETREF(read_vp8_at, Py_NewRef(vp8));
    Py_XSETREF(find_extension, Py_NewRef(find));
    Py_XSETREF(rtp_error, Py_NewRef(error));
    Py_XSETREF(descriptor_type, (PyTypeObject *)Py_NewRef(descriptor));
    tid_index = tid;
    keyframe_index = keyframe;
    rate_window = window;
    log_max = most;
    Py_RETURN_NONE;
}

/* ---- Helpers ------------------------------------------------------------- */

static int
is_configured(PyObject *obj, const SlotTable *table)
{
    if (table->type == NULL || !Py_IS_TYPE(obj, table->type))
        return 0;
    for (int k = 0; k < table->n; k++)
        if (*(PyObject **)((char *)obj + table->offsets[k]) == NULL)
            return 0; /* a field unset: Python says what that means */
    return 1;
}

/* The value of an int, with *ok = 0 if it is not an int or does not fit in 64 bits. */
static long long
small(PyObject *obj, int *ok)
{
    *ok = 0;
    if (!PyLong_Check(obj))
        return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *ok = !overflow;
    return v;
}

static void
set_slot(PyObject **slot, PyObject *value)
{
    Py_XSETREF(*slot, Py_NewRef(value));
}

/* ---- The pieces of Producer._book ----------------------------------------- */

/* if nack is not None: lost = nack.add(ext_seq, now); if lost: producer.send_nack(lost) */
static int
nack_add(PyObject *producer, PyObject *nack, PyObject *ext, PyObject *now)
{
    if (is_configured(nack, &nack_slots)) {
        int ok1, ok2;
        PyObject **newest = &SLOT(nack, nack_slots, N_NEWEST);
        long long n = small(*newest, &ok1), e = small(ext, &ok2);
        if (ok1 && ok2 && n < LLONG_MAX && (n < 0 || e == n + 1)) { /* the next one: no gap */
            set_slot(newest, ext);
            return 0;
        }
    }
    PyObject *lost = call2(nack, s_add, ext, now);
    if (lost == NULL)
        return -1;
    int any = PyObject_IsTrue(lost);
    int rc = any < 0 ? -1 : any ? done(call1(producer, s_send_nack, lost)) : 0;
    Py_DECREF(lost);
    return rc;
}

/* cache.store(seq, data, now): the three lists written in place. */
static int
cache_store(PyObject *cache, PyObject *seq, PyObject *data, PyObject *now)
{
    if (is_configured(cache, &cache_slots)) {
        int ok1, ok2;
        long long size = small(SLOT(cache, cache_slots, C_SIZE), &ok1);
        long long s = small(seq, &ok2);
        PyObject *seqs = SLOT(cache, cache_slots, C_SEQS);
        PyObject *packets = SLOT(cache, cache_slots, C_PACKETS);
        PyObject *times = SLOT(cache, cache_slots, C_TIMES);
        if (ok1 && ok2 && size > 0 && s >= 0 && PyList_CheckExact(seqs) &&
            PyList_CheckExact(packets) && PyList_CheckExact(times) &&
            PyList_GET_SIZE(seqs) == size && PyList_GET_SIZE(packets) == size &&
            PyList_GET_SIZE(times) == size) {
            Py_ssize_t i = (Py_ssize_t)(s % size);
            /* The old items are released once all three slots hold the new ones,
             * so whatever their release runs sees consistent lists of the checked
             * size. */
            PyObject *old_seq = PyList_GET_ITEM(seqs, i);
            PyObject *old_packet = PyList_GET_ITEM(packets, i);
            PyObject *old_time = PyList_GET_ITEM(times, i);
            PyList_SET_ITEM(seqs, i, Py_NewRef(seq));
            PyList_SET_ITEM(packets, i, Py_NewRef(data));
            PyList_SET_ITEM(times, i, Py_NewRef(now));
            Py_XDECREF(old_seq);
            Py_XDECREF(old_packet);
            Py_XDECREF(old_time);
            return 0;
        }
    }
    return done(call3(cache, s_store, seq, data, now));
}

/* meter.add(tid, size, now): the current window's counter in place. */
static int
meter_add(PyObject *meter, long tid, PyObject *size, PyObject *now)
{
    if (is_configured(meter, &meter_slots)) {
        PyObject *start = SLOT(meter, meter_slots, M_START);
        PyObject *current = SLOT(meter, meter_slots, M_CURRENT);
        int ok;
        long long top = small(SLOT(meter, meter_slots, M_TOP), &ok);
        Py_ssize_t index = tid > 0 ? tid : 0;
        if (ok && PyFloat_CheckExact(start) && PyFloat_CheckExact(now) &&
            PyList_CheckExact(current) && index < PyList_GET_SIZE(current)) {
            double age = PyFloat_AS_DOUBLE(now) - PyFloat_AS_DOUBLE(start);
            if (0.0 <= age && age < rate_window) { /* within the window: no roll */
                if (tid > top) {
                    PyObject *t = PyLong_FromLong(tid);
                    if (t == NULL)
                        return -1;
                    Py_XSETREF(SLOT(meter, meter_slots, M_TOP), t);
                }
                Py_INCREF(current); /* held: an odd item's __add__ could replace it */
                PyObject *sum = PyNumber_Add(PyList_GET_ITEM(current, index), size);
                int rc = sum == NULL ? -1 : PyList_SetItem(current, index, sum);
                Py_DECREF(current);
                return rc;
            }
        }
    }
    PyObject *t = PyLong_FromLong(tid);
    if (t == NULL)
        return -1;
    int rc = done(call3(meter, s_add, t, size, now));
    Py_DECREF(t);
    return rc;
}

/* Producer._read_level: the RFC 6464 level to the level sink; RtpError ignored.
 * A sink that is a list is a speaker's log (sfu.policy.speaker.DominantSpeaker.log):
 * the row (level, voice, now) is appended while it holds fewer than `log_max`
 * rows, with no Python run; any other sink is called (owner, level, voice, now). */
static int
read_level(PyObject *producer, PyObject *data, PyObject *h, PyObject *level_id, PyObject *now)
{
    PyObject *profile = SLOT(h, header_slots, H_EXT_PROFILE);
    if (profile == Py_None)
        return 0;
    PyObject *args[5] = {data, profile, SLOT(h, header_slots, H_EXT_OFFSET),
                         SLOT(h, header_slots, H_EXT_LENGTH), level_id};
    PyObject *value = PyObject_Vectorcall(find_extension, args, 5, NULL);
    int rc = 0;
    if (value == NULL)
        goto failed;
    if (value == Py_None || !PyBytes_Check(value) || PyBytes_GET_SIZE(value) != 1) {
        Py_DECREF(value); /* none, or not one byte: parse_audio_level's RtpError */
        return 0;
    }
    unsigned char b = (unsigned char)PyBytes_AS_STRING(value)[0];
    Py_DECREF(value);
    int voice = (b & 0x80) != 0;
    PyObject **seen = &SLOT(producer, producer_slots, P_VAD_SEEN);
    int vad_seen = PyObject_IsTrue(*seen);
    if (vad_seen < 0)
        return -1;
    if (!vad_seen) /* `self._vad_seen or voice` */
        set_slot(seen, voice ? Py_True : Py_False);
    vad_seen = vad_seen || voice;
    PyObject *sink = Py_NewRef(SLOT(producer, producer_slots, P_LEVEL_SINK));
    PyObject *flag = (voice || !vad_seen) ? Py_True : Py_False;
    if (PyList_Check(sink)) {
        if (PyList_GET_SIZE(sink) < log_max) {
            PyObject *level = PyLong_FromLong(b & 0x7F); /* a cached small int */
            PyObject *row = level ? PyTuple_Pack(3, level, flag, now) : NULL;
            rc = row ? PyList_Append(sink, row) : -1;
            Py_XDECREF(row);
            Py_XDECREF(level);
        }
    } else if (sink != Py_None) {
        PyObject *level = PyLong_FromLong(b & 0x7F);
        if (level == NULL) {
            Py_DECREF(sink);
            return -1;
        }
        PyObject *owner = Py_NewRef(SLOT(producer, producer_slots, P_OWNER));
        PyObject *sargs[4] = {owner, level, flag, now};
        rc = done(PyObject_Vectorcall(sink, sargs, 4, NULL));
        Py_DECREF(owner);
        Py_DECREF(level);
    }
    Py_DECREF(sink);
    if (rc == 0)
        return 0;
failed:
    if (PyErr_ExceptionMatches(rtp_error)) { /* as `except RtpError: pass` */
        PyErr_Clear();
        return 0;
    }
    return -1;
}

/* VP8: the descriptor (producer.desc), a key frame's size, the meter by TID. */
static int
read_vp8(PyObject *producer, PyObject *data, PyObject *h, PyObject *size, PyObject *now)
{
    PyObject *args[3] = {data, SLOT(h, header_slots, H_PAYLOAD_OFFSET),
                         SLOT(h, header_slots, H_PAYLOAD_LENGTH)};
    PyObject *desc = PyObject_Vectorcall(read_vp8_at, args, 3, NULL);
    if (desc == NULL)
        return -1;
    set_slot(&SLOT(producer, producer_slots, P_DESC), desc);
    long tid = -1; /* NO_TID */
    int rc = 0;
    if (desc != Py_None) {
        if (!Py_IS_TYPE(desc, descriptor_type) ||
            PyTuple_GET_SIZE(desc) <= (tid_index > keyframe_index ? tid_index : keyframe_index)) {
            PyErr_SetString(PyExc_TypeError, "read_vp8_at answered with no descriptor");
            rc = -1;
            goto out;
        }
        int keyframe = PyObject_IsTrue(PyTuple_GET_ITEM(desc, keyframe_index));
        if (keyframe < 0 || (keyframe && done(call2(producer, s_keyframe, data, h)) < 0)) {
            rc = -1;
            goto out;
        }
        tid = PyLong_AsLong(PyTuple_GET_ITEM(desc, tid_index));
        if (tid == -1 && PyErr_Occurred()) {
            rc = -1;
            goto out;
        }
    }
    PyObject *meter = Py_NewRef(SLOT(producer, producer_slots, P_METER));
    rc = meter_add(meter, tid, size, now);
    Py_DECREF(meter);
out:
    Py_DECREF(desc);
    return rc;
}

/* ---- receive ---------------------------------------------------------------- */

typedef struct {
    PyObject *codec, *ext, *stats, *size, *nack, *cache, *level_id, *meter;
} Held;

static void
release(Held *k)
{
    Py_XDECREF(k->codec);
    Py_XDECREF(k->ext);
    Py_XDECREF(k->stats);
    Py_XDECREF(k->size);
    Py_XDECREF(k->nack);
    Py_XDECREF(k->cache);
    Py_XDECREF(k->level_id);
    Py_XDECREF(k->meter);
}

/* The statistics, the NACK generator and the cache; 1: a repeat (answer True). */
static int
book_sequence(PyObject *producer, PyObject *data, PyObject *h, PyObject *now, Held *k)
{
#define P(f) SLOT(producer, producer_slots, f)
    PyObject *seq = SLOT(h, header_slots, H_SEQ);
    PyObject *unwrapper = Py_NewRef(P(P_UNWRAPPER));
    k->ext = call1(unwrapper, s_unwrap, seq);
    Py_DECREF(unwrapper);
    if (k->ext == NULL)
        return -1;
    k->stats = Py_NewRef(P(P_STATS));
    PyObject *max_seq = PyObject_GetAttr(k->stats, s_max_seq);
    if (max_seq == NULL)
        return -1;
    int newest = PyObject_RichCompareBool(k->ext, max_seq, Py_GT);
    Py_DECREF(max_seq);
    if (newest < 0)
        return -1;
    set_slot(&P(P_NEWEST), newest ? Py_True : Py_False);
    int media = PyObject_IsTrue(SLOT(h, header_slots, H_PAYLOAD_LENGTH));
    if (media < 0)
        return -1;
    if (media)
        set_slot(&P(P_LAST_MEDIA), now);
    k->size = PyLong_FromSsize_t(PyBytes_GET_SIZE(data));
    if (k->size == NULL)
        return -1;
    PyObject *args[5] = {k->stats, k->ext, SLOT(h, header_slots, H_TS), k->size, now};
    if (done(PyObject_VectorcallMethod(s_add, args, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL)) < 0)
        return -1;
    k->nack = Py_NewRef(P(P_NACK));
    if (k->nack != Py_None && nack_add(producer, k->nack, k->ext, now) < 0)
        return -1;
    k->cache = Py_NewRef(P(P_CACHE));
    if (k->cache == Py_None)
        return 0;
    if (!newest) { /* a copy of a packet already forwarded? */
        PyObject *got = call2(k->cache, s_get, seq, now);
        if (got == NULL)
            return -1;
        int repeat = got != Py_None;
        Py_DECREF(got);
        if (repeat)
            return 1;
    }
    return cache_store(k->cache, seq, data, now);
#undef P
}

/* Producer._book: the codec (new reference), True, False, None (not ours), or NULL. */
static PyObject *
book(PyObject *producer, PyObject *data, PyObject *h, PyObject *now)
{
    if (read_vp8_at == NULL || !is_configured(producer, &producer_slots) ||
        !is_configured(h, &header_slots) || !PyBytes_CheckExact(data) || !PyFloat_CheckExact(now))
        Py_RETURN_NONE; /* not ours: Producer._book */
#define P(f) SLOT(producer, producer_slots, f)
    PyObject *by_pt = P(P_CODEC_BY_PT);
    if (!PyDict_CheckExact(by_pt))
        Py_RETURN_NONE;
    Held k = {0};
    PyObject *codec = PyDict_GetItemWithError(by_pt, SLOT(h, header_slots, H_PT));
    if (codec == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_FALSE;
    }
    if (!PyUnicode_CheckExact(codec))
        Py_RETURN_NONE; /* (before anything changed) */
    k.codec = Py_NewRef(codec); /* held: Python code below may change the dict */
    PyObject *answer = NULL;
    int rc = book_sequence(producer, data, h, now, &k);
    if (rc != 0) {
        answer = rc > 0 ? Py_NewRef(Py_True) : NULL;
        goto out;
    }
    k.level_id = Py_NewRef(P(P_LEVEL_ID));
    if (k.level_id != Py_None && read_level(producer, data, h, k.level_id, now) < 0)
        goto out;
    if (PyUnicode_CompareWithASCIIString(k.codec, "vp8") == 0) {
        if (read_vp8(producer, data, h, k.size, now) < 0)
            goto out;
    } else {
        set_slot(&P(P_DESC), Py_None);
        k.meter = Py_NewRef(P(P_METER));
        if (meter_add(k.meter, -1, k.size, now) < 0)
            goto out;
        /* `codec[:4] == "red/"` */
        int red = PyUnicode_Tailmatch(k.codec, s_red, 0, PY_SSIZE_T_MAX, -1);
        if (red < 0)
            goto out;
        if (red) {
            PyObject *ok = call3(producer, s_read_red, data, h, k.ext);
            int good = ok ? PyObject_IsTrue(ok) : -1;
            Py_XDECREF(ok);
            if (good < 0)
                goto out;
            if (!good) {
                answer = Py_NewRef(Py_True);
                goto out;
            }
        }
    }
    answer = Py_NewRef(k.codec);
out:
    release(&k);
    return answer;
#undef P
}

/* The fan-out of Producer.on_rtp: the compiled loop (`_fanout`) or each
 * consumer's forward, in list order, then the relay. */
static int
forward(PyObject *producer, PyObject *data, PyObject *h, PyObject *codec, PyObject *now)
{
#define P(f) SLOT(producer, producer_slots, f)
    PyObject *fanout = Py_NewRef(P(P_FANOUT));
    PyObject *consumers = Py_NewRef(P(P_CONSUMERS)); /* attach/detach replace the list */
    int rc = 0;
    if (fanout != Py_None) {
        PyObject *twcc_at = Py_NewRef(P(P_TWCC_AT));
        PyObject *args[7] = {producer, consumers, data, h, codec, now, twcc_at};
        rc = done(PyObject_Vectorcall(fanout, args, 7, NULL));
        Py_DECREF(twcc_at);
    } else if (!PyList_Check(consumers)) {
        PyErr_SetString(PyExc_TypeError, "Producer.consumers must be a list");
        rc = -1;
    } else {
        for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(consumers); i++) {
            PyObject *c = Py_NewRef(PyList_GET_ITEM(consumers, i));
            PyObject *args[6] = {c, producer, data, h, codec, now};
            rc = done(PyObject_VectorcallMethod(s_forward, args,
                                                6 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL));
            Py_DECREF(c);
        }
    }
    Py_DECREF(consumers);
    Py_DECREF(fanout);
    if (rc < 0)
        return -1;
    PyObject *relay = Py_NewRef(P(P_RELAY));
    if (relay != Py_None)
        rc = done(call1(relay, s_rtp, data));
    Py_DECREF(relay);
    return rc;
#undef P
}

/* receive(producer, data, h, now): Producer.on_rtp (True, False, or None: not ours). */
static PyObject *
recv_receive(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "receive(producer, data, h, now)");
        return NULL;
    }
    PyObject *codec = book(args[0], args[1], args[2], args[3]);
    if (codec == NULL || !PyUnicode_Check(codec))
        return codec; /* an error, True, False or None */
    int rc = forward(args[0], args[1], args[2], codec, args[3]);
    Py_DECREF(codec);
    if (rc < 0)
        return NULL;
    Py_RETURN_TRUE;
}

static PyMethodDef module_methods[] = {
    {"configure", recv_configure, METH_VARARGS,
     "configure(role, cls): the slotted class whose fields receive uses"},
    {"bind", recv_bind, METH_VARARGS,
     "bind(read_vp8_at, find_extension, RtpError, Vp8Descriptor, tid_index, keyframe_index, "
     "rate_window, log_max)"},
    {"receive", (PyCFunction)(void (*)(void))recv_receive, METH_FASTCALL,
     "receive(producer, data, h, now): Producer.on_rtp in C (True, False or None)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_recv", "A Producer's per-packet work in C (see the source).",
    -1, module_methods,
};

PyMODINIT_FUNC
PyInit__recv(void)
{
    s_forward = PyUnicode_InternFromString("forward");
    s_rtp = PyUnicode_InternFromString("rtp");
    s_unwrap = PyUnicode_InternFromString("unwrap");
    s_max_seq = PyUnicode_InternFromString("max_seq");
    s_add = PyUnicode_InternFromString("add");
    s_send_nack = PyUnicode_InternFromString("send_nack");
    s_get = PyUnicode_InternFromString("get");
    s_store = PyUnicode_InternFromString("store");
    s_keyframe = PyUnicode_InternFromString("_keyframe");
    s_read_red = PyUnicode_InternFromString("_read_red");
    s_red = PyUnicode_InternFromString("red/");
    if (!s_forward || !s_rtp || !s_red || !s_unwrap || !s_max_seq || !s_add || !s_send_nack || !s_get || !s_store || !s_keyframe ||
        !s_read_red)
        return NULL;
    return PyModule_Create(&module);
}
