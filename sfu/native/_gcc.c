/* sfu.native._gcc: the per-packet loops of transport-cc feedback handling, in C.
 *
 * Each function here is a port of one named Python function, which stays as
 * its pure twin (sfu.native.load("_gcc") is None without this module, or with
 * VISITROOM_NATIVE=0).  They give exactly the same outputs: the same double
 * operations in the same order (the build uses -ffp-contract=off, so no fused
 * multiply-add), Python's semantics where they differ from C's (float %,
 * max()), and the same exceptions for input the Python would refuse.
 *
 *   tcc_chunk_walk   sfu/packet/rtcp.py          _tcc_chunk_walk
 *   history_columns  sfu/transport/sendhistory.py SendHistory._columns_per_packet
 *                                                 (with twcc.receive_times)
 *   split_feedback   sfu/policy/gcc.py           _split
 *   arrival_order    sfu/policy/gcc.py           _arrival_order
 *   acked_windows    sfu/policy/gcc_rates.py     _windows
 *   DelayDetector    sfu/policy/gcc_delay.py     DelayDetector (reset, add_all)
 *
 * Hostile input: every length and offset is checked before it is used; the
 * inputs are read (and converted) completely before any state is changed, so a
 * refused call changes nothing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------- */

/* Python's float % (float_rem in Objects/floatobject.c): the sign of the divisor. */
static double py_fmod(double x, double y)
{
    double mod = fmod(x, y);
    if (mod) {
        if ((y < 0) != (mod < 0))
            mod += y;
    } else {
        mod = copysign(0.0, y);
    }
    return mod;
}

/* The doubles of a sequence (floats or ints, as Python arithmetic takes them). */
static double *doubles_of(PyObject *fast, Py_ssize_t n, double *stack, Py_ssize_t stack_n)
{
    double *out = n <= stack_n ? stack : PyMem_New(double, n);
    if (out == NULL)
        return (double *)PyErr_NoMemory();
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *item = items[k];
        if (PyFloat_CheckExact(item)) {
            out[k] = PyFloat_AS_DOUBLE(item);
            continue;
        }
        if (!PyFloat_Check(item) && !PyLong_Check(item)) {
            PyErr_Format(PyExc_TypeError, "a time must be a number, not %.100s",
                         Py_TYPE(item)->tp_name);
            goto fail;
        }
        out[k] = PyFloat_AsDouble(item);
        if (out[k] == -1.0 && PyErr_Occurred())
            goto fail;
    }
    return out;
fail:
    if (out != stack)
        PyMem_Free(out);
    return NULL;
}

/* ---- tcc_chunk_walk: sfu/packet/rtcp.py _tcc_chunk_walk ------------------ */

/* Walk the packet status chunks of a transport-cc feedback, data[i:end], covering
 * status_count statuses: (end offset, delta bytes, one status symbol per packet).
 * ValueError (rtcp.py turns it into RtcpError) with the Python's messages. */
static PyObject *tcc_chunk_walk(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t i, end, status_count;
    if (!PyArg_ParseTuple(args, "y*nnn", &view, &i, &end, &status_count))
        return NULL;
    PyObject *result = NULL;
    unsigned char *symbols = NULL;
    const unsigned char *data = view.buf;
    if (i < 0 || end < i || end > view.len || status_count < 0 || status_count > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "transport-cc chunk walk outside the packet");
        goto done;
    }
    symbols = PyMem_Malloc(status_count ? (size_t)status_count : 1);
    if (symbols == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t remaining = status_count, have = 0, delta_bytes = 0;
    while (remaining > 0) {
        if (i + 2 > end) {
            PyErr_Format(PyExc_ValueError,
                         "transport-cc status count %zd overruns the packet", status_count);
            goto done;
        }
        unsigned chunk = ((unsigned)data[i] << 8) | data[i + 1];
        i += 2;
        if (!(chunk & 0x8000)) { /* run length: 2-bit symbol, 13-bit run */
            unsigned symbol = (chunk >> 13) & 0x3;
            if (symbol == 3) {
                PyErr_SetString(PyExc_ValueError, "transport-cc reserved status symbol");
                goto done;
            }
            Py_ssize_t run = chunk & 0x1FFF;
            if (run > remaining)
                run = remaining;
            delta_bytes += run * symbol;
            memset(symbols + have, (int)symbol, (size_t)run);
            have += run;
            remaining -= run;
        } else if (!(chunk & 0x4000)) { /* status vector: 14 one-bit symbols */
            Py_ssize_t n = remaining < 14 ? remaining : 14;
            for (Py_ssize_t k = 0; k < n; k++) {
                unsigned char symbol = (chunk >> (13 - k)) & 0x1;
                symbols[have++] = symbol;
                delta_bytes += symbol;
            }
            remaining -= n;
        } else { /* status vector: 7 two-bit symbols; a reserved one (3) is refused */
            Py_ssize_t n = remaining < 7 ? remaining : 7;
            for (Py_ssize_t k = 0; k < n; k++) {
                if (((chunk >> (12 - 2 * k)) & 0x3) == 3) {
                    PyErr_SetString(PyExc_ValueError, "transport-cc reserved status symbol");
                    goto done;
                }
            }
            for (Py_ssize_t k = 0; k < n; k++) {
                unsigned char symbol = (chunk >> (12 - 2 * k)) & 0x3;
                symbols[have++] = symbol;
                delta_bytes += symbol;
            }
            remaining -= n;
        }
    }
    result = Py_BuildValue("nny#", i, delta_bytes, (const char *)symbols, have);
done:
    PyMem_Free(symbols);
    PyBuffer_Release(&view);
    return result;
}

/* ---- history_columns: SendHistory._columns_per_packet + receive_times ------ */

#define DELTA_US 250
#define TICKS_PER_REFERENCE 256
#define REFERENCE_LIMIT (INT64_C(1) << 40) /* beyond: the Python path (big ints) */

/* The reported packets the ring remembers, in sequence order, as five lists
 * (sequences, send times, sizes, arrivals or None, probe ids) and the count of
 * reported packets it does not remember; a received packet's slot is freed.
 * The ring is SendHistory.ring: a writable buffer of RING_STRIDE doubles per
 * slot (sequence, send time, size, probe; a free slot's sequence is NaN).
 * None when the reference time is beyond what int64 ticks hold exactly (the
 * caller then takes the Python path). */
#define RING_STRIDE 4

static double ring_get(const char *ring, Py_ssize_t slot, int field)
{
    double v;
    memcpy(&v, ring + ((size_t)slot * RING_STRIDE + (size_t)field) * sizeof(double), sizeof(v));
    return v;
}

/* Python's `d == seq` for a double and an int64: exact (NaN equals nothing). */
static int ring_seq_is(double d, int64_t seq)
{
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
        return 0;
    return (double)(int64_t)d == d && (int64_t)d == seq;
}

/* int(d) for a size or probe the ring holds (written from ints); NULL past int64. */
static PyObject *ring_int(double d)
{
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) {
        PyErr_SetString(PyExc_ValueError, "send history slot holds no integer");
        return NULL;
    }
    return PyLong_FromLongLong((long long)d);
}

static PyObject *history_columns(PyObject *self, PyObject *args)
{
    Py_buffer ring;
    long long mask, newest, reference;
    int base_seq;
    double oldest;
    Py_buffer symbols, deltas;
    if (!PyArg_ParseTuple(args, "w*LLdiy*y*L", &ring, &mask, &newest, &oldest, &base_seq,
                          &symbols, &deltas, &reference))
        return NULL;
    PyObject *result = NULL;
    PyObject *cols[5] = {NULL, NULL, NULL, NULL, NULL};
    const unsigned char *sym = symbols.buf, *del = deltas.buf;
    Py_ssize_t count = symbols.len;
    char *slots = ring.buf;
    if (mask < 0 || mask >= ring.len / (Py_ssize_t)(RING_STRIDE * sizeof(double))) {
        PyErr_SetString(PyExc_IndexError, "history mask beyond its ring");
        goto done;
    }
    if (reference <= -REFERENCE_LIMIT || reference >= REFERENCE_LIMIT ||
        newest <= -(INT64_C(1) << 62) || newest >= (INT64_C(1) << 62)) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* the deltas the symbols need must be there (receive_times would raise IndexError) */
    Py_ssize_t needed = 0;
    for (Py_ssize_t k = 0; k < count; k++)
        needed += sym[k] == 1 ? 1 : sym[k] == 2 ? 2 : 0;
    if (needed > deltas.len) {
        PyErr_SetString(PyExc_IndexError, "transport-cc deltas shorter than their statuses");
        goto done;
    }
    for (int c = 0; c < 5; c++) {
        cols[c] = PyList_New(0);
        if (cols[c] == NULL)
            goto done;
    }
    int64_t ticks = reference * TICKS_PER_REFERENCE;
    Py_ssize_t at = 0, unknown = 0;
    int64_t seq16 = base_seq;
    for (Py_ssize_t k = 0; k < count; k++, seq16++) {
        int64_t arrival_us = 0;
        int received = 0;
        if (sym[k] == 1) {
            ticks += del[at];
            at += 1;
            arrival_us = ticks * DELTA_US;
            received = 1;
        } else if (sym[k] == 2) {
            int delta = (del[at] << 8) | del[at + 1];
            ticks += delta & 0x8000 ? delta - 0x10000 : delta;
            at += 2;
            arrival_us = ticks * DELTA_US;
            received = 1;
        }
        int64_t seq = newest - ((newest - (seq16 & 0xFFFF)) & 0xFFFF);
        Py_ssize_t slot = (Py_ssize_t)(seq & mask);
        double send = ring_get(slots, slot, 1);
        if (!ring_seq_is(ring_get(slots, slot, 0), seq) || send < oldest) {
            unknown++;
            continue;
        }
        PyObject *row[5] = {PyLong_FromLongLong(seq), PyFloat_FromDouble(send),
                            ring_int(ring_get(slots, slot, 2)), NULL,
                            ring_int(ring_get(slots, slot, 3))};
        row[3] = received ? PyFloat_FromDouble((double)arrival_us / 1e6) : Py_NewRef(Py_None);
        int failed = 0;
        for (int c = 0; c < 5; c++)
            failed = failed || row[c] == NULL || PyList_Append(cols[c], row[c]) < 0;
        for (int c = 0; c < 5; c++)
            Py_XDECREF(row[c]);
        if (failed)
            goto done;
        if (received) { /* answered: a repeated report is skipped (the columns hold the values) */
            double free_slot = Py_NAN;
            memcpy(slots + (size_t)slot * RING_STRIDE * sizeof(double), &free_slot, sizeof(double));
        }
    }
    result = Py_BuildValue("(OOOOOn)", cols[0], cols[1], cols[2], cols[3], cols[4], unknown);
done:
    for (int c = 0; c < 5; c++)
        Py_XDECREF(cols[c]);
    PyBuffer_Release(&ring);
    PyBuffer_Release(&symbols);
    PyBuffer_Release(&deltas);
    return result;
}

/* ---- acked_windows: sfu/policy/gcc_rates.py _windows --------------------- */

#define INITIAL_WINDOW_S 0.5
#define WINDOW_S 0.15
#define UNCERTAINTY_SCALE 10.0
#define VARIANCE_GROWTH 5.0

/* Count one feedback's received packets (arrival, size + extra bytes) into 150 ms
 * windows (500 ms before the first sample), each complete window's rate going
 * through the Bayesian filter: (last arrival, window_s, bytes, kbps or None,
 * variance, where the arrival times last went backwards: -1 if they did not). */
static PyObject *acked_windows(PyObject *self, PyObject *args)
{
    PyObject *arrivals_in, *sizes_in, *kbps_in;
    long long extra, total;
    double last, window_s, variance;
    if (!PyArg_ParseTuple(args, "OOLddLOd", &arrivals_in, &sizes_in, &extra, &last, &window_s,
                          &total, &kbps_in, &variance))
        return NULL;
    int has_kbps = kbps_in != Py_None;
    double kbps = 0.0;
    if (has_kbps) {
        kbps = PyFloat_AsDouble(kbps_in);
        if (kbps == -1.0 && PyErr_Occurred())
            return NULL;
    }
    PyObject *arrivals = PySequence_Fast(arrivals_in, "arrivals must be a sequence");
    if (arrivals == NULL)
        return NULL;
    PyObject *sizes = PySequence_Fast(sizes_in, "sizes must be a sequence");
    if (sizes == NULL) {
        Py_DECREF(arrivals);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(arrivals);
    if (PySequence_Fast_GET_SIZE(sizes) < n)
        n = PySequence_Fast_GET_SIZE(sizes); /* zip: the shorter */
    double stack[256];
    long long size_stack[256];
    long long *size_values = n <= 256 ? size_stack : PyMem_New(long long, n);
    double *times = doubles_of(arrivals, n, stack, 256);
    if (times == NULL || size_values == NULL) {
        if (size_values == NULL)
            PyErr_NoMemory();
        goto done;
    }
    /* sizes: ints of at most 2^40 (the estimator drops anything beyond 65,535) */
    PyObject **size_items = PySequence_Fast_ITEMS(sizes);
    for (Py_ssize_t k = 0; k < n; k++) {
        if (!PyLong_Check(size_items[k])) {
            PyErr_SetString(PyExc_TypeError, "a packet size must be an int");
            goto done;
        }
        size_values[k] = PyLong_AsLongLong(size_items[k]);
        if (size_values[k] == -1 && PyErr_Occurred())
            goto done;
        if (size_values[k] > (INT64_C(1) << 40) || size_values[k] < -(INT64_C(1) << 40)) {
            PyErr_SetString(PyExc_OverflowError, "a packet size beyond 2^40 bytes");
            goto done;
        }
    }
    /* (bounds that keep 8 * total inside 64 bits; real windows hold a few MB) */
    if (extra > (INT64_C(1) << 40) || extra < -(INT64_C(1) << 40) ||
        total > (INT64_C(1) << 56) || total < -(INT64_C(1) << 56)) {
        PyErr_SetString(PyExc_OverflowError, "byte counts beyond what the window can hold");
        goto done;
    }
    double window = has_kbps ? WINDOW_S : INITIAL_WINDOW_S;
    int restarted = 0;
    Py_ssize_t last_back = 0; /* where the arrivals last went backwards (_last_restart) */
    for (Py_ssize_t k = 0; k < n; k++) {
        double arrival = times[k];
        double gap = arrival - last;
        if (gap < 0) { /* time went backwards: start over */
            window_s = 0.0;
            total = 0;
            restarted = 1;
            if (k >= 1)
                last_back = k;
        } else {
            window_s += gap;
            if (gap > window) { /* nothing received for a whole window */
                total = 0;
                window_s = py_fmod(window_s, window);
            }
        }
        last = arrival;
        if (window_s >= window) {
            double sample = (double)(8 * total) / window / 1000;
            if (!has_kbps) { /* _filtered: the first sample is the estimate */
                kbps = sample;
                has_kbps = 1;
            } else {
                double floor = 1e-3 > kbps ? 1e-3 : kbps; /* max(kbps, 1e-3) */
                double uncertainty = UNCERTAINTY_SCALE * fabs(kbps - sample) / floor;
                double sample_var = uncertainty * uncertainty;
                double predicted_var = variance + VARIANCE_GROWTH;
                double sum = sample_var + predicted_var;
                kbps = (sample_var * kbps + predicted_var * sample) / sum;
                variance = sample_var * predicted_var / sum;
            }
            window_s -= window;
            total = 0;
            window = WINDOW_S;
        }
        total += size_values[k] + extra;
        if (total > (INT64_C(1) << 56) || total < -(INT64_C(1) << 56)) {
            PyErr_SetString(PyExc_OverflowError, "window byte count overflow");
            goto done;
        }
    }
    PyObject *kbps_out = has_kbps ? PyFloat_FromDouble(kbps) : Py_NewRef(Py_None);
    if (kbps_out == NULL)
        goto done;
    result = Py_BuildValue("(ddLNdn)", last, window_s, total, kbps_out, variance,
                           restarted ? last_back : (Py_ssize_t)-1);
done:
    if (times != NULL && times != stack)
        PyMem_Free(times);
    if (size_values != NULL && size_values != size_stack)
        PyMem_Free(size_values);
    Py_DECREF(arrivals);
    Py_DECREF(sizes);
    return result;
}

/* ---- split_feedback: sfu/policy/gcc.py _split ------------------------------ */

#define MAX_TIME_S 1e9
#define MAX_PACKET_BYTES 65535

/* A number's double: 1, or 0 when it is not a float or an int that fits (the
 * caller then leaves the packet to the Python's per-packet path). */
static int number_of(PyObject *item, double *out)
{
    if (PyFloat_Check(item)) {
        *out = PyFloat_AS_DOUBLE(item);
        return 1;
    }
    if (!PyLong_Check(item))
        return 0;
    *out = PyLong_AsDouble(item);
    if (*out == -1.0 && PyErr_Occurred()) {
        PyErr_Clear(); /* beyond a double: insane anyway */
        return 0;
    }
    return 1;
}

/* An int's value: 1, or 0 when it is not an int or does not fit 64 bits. */
static int int64_of(PyObject *item, long long *out)
{
    if (!PyLong_Check(item))
        return 0;
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(item, &overflow);
    if (*out == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return !overflow;
}

/* The items of `fast` at the received (keep[k]) indices, as a new list. */
static PyObject *kept(PyObject *fast, const unsigned char *keep, Py_ssize_t n, Py_ssize_t count)
{
    PyObject *out = PyList_New(count);
    if (out == NULL)
        return NULL;
    PyObject **items = PySequence_Fast_ITEMS(fast);
    Py_ssize_t j = 0;
    for (Py_ssize_t k = 0; k < n; k++)
        if (keep[k])
            PyList_SET_ITEM(out, j++, Py_NewRef(items[k]));
    return out;
}

/* split_feedback(sequences, send_times, sizes, arrivals, probes, since): one
 * feedback's packets split into received and lost, or None when one is insane
 * (or not plainly typed: the Python's per-packet path then decides).  See _split. */
static PyObject *split_feedback(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "split_feedback(sequences, send_times, sizes, arrivals, probes, since)");
        return NULL;
    }
    double since = PyFloat_AsDouble(args[5]);
    if (since == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *fast[5] = {NULL, NULL, NULL, NULL, NULL};
    PyObject *result = NULL, *lost_probes = NULL;
    PyObject *out[5] = {NULL, NULL, NULL, NULL, NULL};
    unsigned char keep_stack[256], *keep = keep_stack;
    double send_stack[256], *sends = send_stack;
    for (int c = 0; c < 5; c++) {
        fast[c] = PySequence_Fast(args[c], "feedback columns must be sequences");
        if (fast[c] == NULL)
            goto done;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast[0]);
    for (int c = 1; c < 5; c++) {
        if (PySequence_Fast_GET_SIZE(fast[c]) != n) {
            PyErr_SetString(PyExc_ValueError, "feedback columns of different lengths");
            goto done;
        }
    }
    if (n > 256) {
        keep = PyMem_Malloc((size_t)n);
        sends = PyMem_New(double, n);
        if (keep == NULL || sends == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    PyObject **seqs = PySequence_Fast_ITEMS(fast[0]), **send_items = PySequence_Fast_ITEMS(fast[1]);
    PyObject **size_items = PySequence_Fast_ITEMS(fast[2]);
    PyObject **arrival_items = PySequence_Fast_ITEMS(fast[3]);
    PyObject **probe_items = PySequence_Fast_ITEMS(fast[4]);
    /* one pass: every value sane, the received ones, the orders */
    Py_ssize_t received = 0, lost = 0, counted = 0, lost_probe_count = 0;
    int in_order = 1, in_sequence = 1, probing = 0, have_last = 0;
    double last_arrival = 0.0;
    long long last_seq = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        double send, arrival = 0.0;
        long long size, probe, seq;
        if (!number_of(send_items[k], &send) || !(-MAX_TIME_S < send && send < MAX_TIME_S))
            goto insane;
        if (!int64_of(size_items[k], &size) || !(0 < size && size <= MAX_PACKET_BYTES))
            goto insane;
        if (!int64_of(probe_items[k], &probe) || !int64_of(seqs[k], &seq))
            goto insane;
        sends[k] = send;
        if (probe >= 0)
            probing = 1;
        keep[k] = arrival_items[k] != Py_None;
        if (!keep[k]) {
            lost++;
            continue;
        }
        if (!number_of(arrival_items[k], &arrival) ||
            !(-MAX_TIME_S < arrival && arrival < MAX_TIME_S))
            goto insane;
        if (have_last) {
            if (!(last_arrival <= arrival))
                in_order = 0;
            if (!(last_seq <= seq))
                in_sequence = 0;
        }
        have_last = 1;
        last_arrival = arrival;
        last_seq = seq;
        received++;
        if (send >= since)
            counted++;
    }
    /* the loss side counts the lost packets sent since the last decrease; the probe
       clusters hear of each lost probe packet */
    Py_ssize_t lost_counted = 0;
    for (Py_ssize_t k = 0; k < n && lost; k++) {
        if (keep[k])
            continue;
        if (sends[k] >= since)
            lost_counted++;
        long long probe;
        int64_of(probe_items[k], &probe); /* (an int64: checked above) */
        lost_probe_count += probe >= 0;
    }
    lost_probes = PyList_New(lost_probe_count);
    if (lost_probes == NULL)
        goto done;
    for (Py_ssize_t k = 0, j = 0; k < n && lost_probe_count; k++) {
        long long probe;
        if (keep[k] || !int64_of(probe_items[k], &probe) || probe < 0)
            continue;
        PyObject *pair = PyTuple_Pack(2, probe_items[k], seqs[k]);
        if (pair == NULL)
            goto done;
        PyList_SET_ITEM(lost_probes, j++, pair);
    }
    for (int c = 0; c < 5; c++) {
        if (c == 4 && !probing) {
            out[c] = Py_NewRef(Py_None);
        } else if (!lost) {
            out[c] = Py_NewRef(args[c]); /* nothing lost: the columns as they came */
        } else {
            out[c] = kept(fast[c], keep, n, received);
            if (out[c] == NULL)
                goto done;
        }
    }
    /* (lost, counted, lost probes, sequences, send times, sizes, arrivals, probes,
       in_order, in_sequence) */
    result = Py_BuildValue("(nnOOOOOOOO)", lost_counted, counted, lost_probes, out[0], out[1],
                           out[2], out[3], out[4], in_order ? Py_True : Py_False,
                           in_sequence ? Py_True : Py_False);
    goto done;
insane:
    result = Py_NewRef(Py_None);
done:
    for (int c = 0; c < 5; c++) {
        Py_XDECREF(fast[c]);
        Py_XDECREF(out[c]);
    }
    Py_XDECREF(lost_probes);
    if (keep != keep_stack)
        PyMem_Free(keep);
    if (sends != send_stack)
        PyMem_Free(sends);
    return result;
}

/* ---- arrival_order: sfu/policy/gcc.py _arrival_order ----------------------- */

typedef struct {
    double arrival;
    long long sequence;
} OrderKey;

/* (arrival, sequence) order; by_arrival: arrival alone (the sequences ascend) */
static int key_before(const OrderKey *a, const OrderKey *b, int by_arrival)
{
    if (a->arrival != b->arrival)
        return a->arrival < b->arrival;
    return !by_arrival && a->sequence < b->sequence;
}

/* A stable merge sort of the indices `at` (n of them) by their keys; `tmp` has n. */
static void order_indices(const OrderKey *keys, Py_ssize_t *at, Py_ssize_t *tmp, Py_ssize_t n,
                          int by_arrival)
{
    for (Py_ssize_t width = 1; width < n; width *= 2) {
        for (Py_ssize_t lo = 0; lo < n; lo += 2 * width) {
            Py_ssize_t mid = lo + width < n ? lo + width : n;
            Py_ssize_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            Py_ssize_t i = lo, j = mid, k = lo;
            if (mid < hi && !key_before(&keys[at[mid]], &keys[at[mid - 1]], by_arrival)) {
                memcpy(tmp + lo, at + lo, (size_t)(hi - lo) * sizeof(Py_ssize_t));
                continue; /* the two runs are already in order (the usual, nearly sorted) */
            }
            while (i < mid && j < hi) /* the right one only if strictly before: stable */
                tmp[k++] = key_before(&keys[at[j]], &keys[at[i]], by_arrival) ? at[j++] : at[i++];
            while (i < mid)
                tmp[k++] = at[i++];
            while (j < hi)
                tmp[k++] = at[j++];
        }
        memcpy(at, tmp, (size_t)n * sizeof(Py_ssize_t));
    }
}

/* arrival_order(arrivals, sequences, send_times, sizes, probes or None, in_sequence):
 * the columns sorted by (arrival, sequence), stable, as new lists; None when an
 * arrival is not a float or int in a double or a sequence number not in 64 bits. */
static PyObject *arrival_order(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "arrival_order(arrivals, sequences, send_times, "
                                         "sizes, probes, in_sequence)");
        return NULL;
    }
    int by_arrival = PyObject_IsTrue(args[5]);
    if (by_arrival < 0)
        return NULL;
    int columns = args[4] == Py_None ? 4 : 5;
    PyObject *fast[5] = {NULL, NULL, NULL, NULL, NULL}, *out[5] = {NULL, NULL, NULL, NULL, NULL};
    PyObject *result = NULL;
    OrderKey *keys = NULL;
    Py_ssize_t *at = NULL, *tmp = NULL;
    for (int c = 0; c < columns; c++) {
        fast[c] = PySequence_Fast(args[c], "columns must be sequences");
        if (fast[c] == NULL)
            goto done;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast[0]);
    for (int c = 1; c < columns; c++) {
        if (PySequence_Fast_GET_SIZE(fast[c]) != n) {
            PyErr_SetString(PyExc_ValueError, "columns of different lengths");
            goto done;
        }
    }
    keys = PyMem_New(OrderKey, n ? n : 1);
    at = PyMem_New(Py_ssize_t, n ? n : 1);
    tmp = PyMem_New(Py_ssize_t, n ? n : 1);
    if (keys == NULL || at == NULL || tmp == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject **arrivals = PySequence_Fast_ITEMS(fast[0]), **seqs = PySequence_Fast_ITEMS(fast[1]);
    for (Py_ssize_t k = 0; k < n; k++) {
        if (!number_of(arrivals[k], &keys[k].arrival) || isnan(keys[k].arrival) ||
            !int64_of(seqs[k], &keys[k].sequence)) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        at[k] = k;
    }
    order_indices(keys, at, tmp, n, by_arrival);
    for (int c = 0; c < 5; c++) {
        if (c >= columns) {
            out[c] = Py_NewRef(Py_None);
            continue;
        }
        out[c] = PyList_New(n);
        if (out[c] == NULL)
            goto done;
        PyObject **items = PySequence_Fast_ITEMS(fast[c]);
        for (Py_ssize_t k = 0; k < n; k++)
            PyList_SET_ITEM(out[c], k, Py_NewRef(items[at[k]]));
    }
    result = PyTuple_Pack(5, out[0], out[1], out[2], out[3], out[4]);
done:
    for (int c = 0; c < 5; c++) {
        Py_XDECREF(fast[c]);
        Py_XDECREF(out[c]);
    }
    PyMem_Free(keys);
    PyMem_Free(at);
    PyMem_Free(tmp);
    return result;
}

/* ---- DelayDetector: sfu/policy/gcc_delay.py DelayDetector ------------------ */

#define GROUP_S 0.005
#define BURST_S 0.005
#define MAX_BURST_S 0.1
#define ARRIVAL_JUMP_S 3.0
#define REORDERED_RESET 3
#define WINDOW 20
#define SMOOTHING 0.9
#define NEW_WEIGHT (1 - SMOOTHING) /* folded at compile time: the same double as Python's */
#define GAIN 4.0
#define MIN_DELTAS 60
#define MAX_DELTAS 1000
#define OVERUSE_TIME_MS 10.0
#define INITIAL_THRESHOLD_MS 12.5
#define MIN_THRESHOLD_MS 6.0
#define MAX_THRESHOLD_MS 600.0
#define K_UP 0.0087
#define K_DOWN 0.039
#define MAX_ADAPT_OFFSET_MS 15.0
#define MAX_ADAPT_STEP_MS 100.0
#define REBASE_MS 100000.0
#define FLAT_X 1e-9

enum { NORMAL, OVERUSING, UNDERUSING };
static PyObject *state_names[3]; /* "normal", "overusing", "underusing" (interned) */

typedef struct {
    PyObject_HEAD
    /* the trendline and detector (reset() keeps them) */
    int state;
    double threshold;
    long deltas;
    int has_first_ms;
    double first_ms;
    double accumulated, smoothed, trend, overuse_ms;
    long overuse_count;
    int has_last_update;
    double last_update_ms;
    /* the fitted line's points, oldest first (at most WINDOW + 1 for a moment) */
    double px[WINDOW + 1], py[WINDOW + 1];
    int points;
    double origin, sx, sy, sxx, sxy;
    /* the send-time groups */
    double first_send, last_send, first_arrival, last_arrival, last_now;
    int has_previous;
    double previous_send, previous_arrival, previous_now;
    long reordered;
} Detector;

static void detector_reset(Detector *d)
{
    d->first_send = INFINITY; /* NO_GROUP */
    d->last_send = d->first_arrival = d->last_arrival = d->last_now = 0.0;
    d->has_previous = 0;
    d->previous_send = d->previous_arrival = d->previous_now = 0.0;
    d->reordered = 0;
}

static PyObject *Detector_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) || (kwargs != NULL && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "DelayDetector() takes no arguments");
        return NULL;
    }
    Detector *d = (Detector *)type->tp_alloc(type, 0); /* zeroed */
    if (d == NULL)
        return NULL;
    d->state = NORMAL;
    d->threshold = INITIAL_THRESHOLD_MS;
    d->overuse_ms = -1.0;
    detector_reset(d);
    return (PyObject *)d;
}

static PyObject *Detector_reset(Detector *d, PyObject *unused)
{
    detector_reset(d);
    Py_RETURN_NONE;
}

/* The fitted line's running sums over the points, x relative to origin (_sums). */
static void detector_sums(Detector *d)
{
    double sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0;
    for (int k = 0; k < d->points; k++) {
        double dx = d->px[k] - d->origin;
        sx += dx;
        sy += d->py[k];
        sxx += dx * dx;
        sxy += dx * d->py[k];
    }
    d->sx = sx;
    d->sy = sy;
    d->sxx = sxx;
    d->sxy = sxy;
}

/* One complete group's delay variation into the trendline and the detector: the
 * body of add_all's "the current group is complete" branch after its checks. */
static void detector_group(Detector *d, double arrival, double send_delta,
                           double arrival_delta)
{
    double arrival_ms = arrival * 1000.0;
    double send_delta_ms = send_delta * 1000.0;
    if (d->deltas < MAX_DELTAS)
        d->deltas += 1;
    if (!d->has_first_ms) {
        d->has_first_ms = 1;
        d->first_ms = arrival_ms;
    }
    d->accumulated += arrival_delta * 1000.0 - send_delta_ms;
    d->smoothed = SMOOTHING * d->smoothed + NEW_WEIGHT * d->accumulated;
    /* the fitted line: add (x, smoothed), drop the oldest point beyond WINDOW */
    double x = arrival_ms - d->first_ms;
    d->px[d->points] = x;
    d->py[d->points] = d->smoothed;
    d->points++;
    int count = d->points;
    double old_x, old_y;
    if (count > WINDOW) {
        old_x = d->px[0];
        old_y = d->py[0];
        memmove(d->px, d->px + 1, WINDOW * sizeof(double));
        memmove(d->py, d->py + 1, WINDOW * sizeof(double));
        d->points = count = WINDOW;
    } else {
        old_x = d->origin; /* adds nothing to the sums below */
        old_y = 0.0;
    }
    if (count == 1 || fabs(x - d->origin) > REBASE_MS) {
        d->origin = d->px[0];
        detector_sums(d);
    } else {
        double dx = x - d->origin;
        double old_dx = old_x - d->origin;
        d->sx += dx - old_dx;
        d->sy += d->smoothed - old_y;
        d->sxx += dx * dx - old_dx * old_dx;
        d->sxy += dx * d->smoothed - old_dx * old_y;
    }
    double trend = d->trend;
    if (count == WINDOW) {
        double denominator = d->sxx - d->sx * d->sx / WINDOW;
        if (!(denominator <= FLAT_X))
            trend = (d->sxy - d->sx * d->sy / WINDOW) / denominator;
    }
    /* the detector: the slope, scaled, against the adaptive threshold */
    if (d->deltas < 2) {
        d->state = NORMAL;
        return;
    }
    double modified = (double)(d->deltas < MIN_DELTAS ? d->deltas : MIN_DELTAS) * trend * GAIN;
    if (modified > d->threshold) {
        if (d->overuse_ms < 0)
            d->overuse_ms = send_delta_ms / 2; /* assume half the interval was overuse */
        else
            d->overuse_ms += send_delta_ms;
        d->overuse_count += 1;
        if (d->overuse_ms > OVERUSE_TIME_MS && d->overuse_count > 1 && trend >= d->trend) {
            d->overuse_ms = 0.0;
            d->overuse_count = 0;
            d->state = OVERUSING;
        }
    } else if (modified < -d->threshold) {
        d->overuse_ms = -1.0;
        d->overuse_count = 0;
        d->state = UNDERUSING;
    } else {
        d->overuse_ms = -1.0;
        d->overuse_count = 0;
        d->state = NORMAL;
    }
    d->trend = trend;
    /* adapt the threshold; a spike (e.g. a route change) must not move it */
    double size = fabs(modified);
    if (d->has_last_update && !(size > d->threshold + MAX_ADAPT_OFFSET_MS)) {
        double k = size < d->threshold ? K_DOWN : K_UP;
        double step_ms = arrival_ms - d->last_update_ms;
        if (step_ms < 0.0)
            step_ms = 0.0;
        if (step_ms > MAX_ADAPT_STEP_MS)
            step_ms = MAX_ADAPT_STEP_MS;
        d->threshold += k * (size - d->threshold) * step_ms;
        if (d->threshold < MIN_THRESHOLD_MS)
            d->threshold = MIN_THRESHOLD_MS;
        if (d->threshold > MAX_THRESHOLD_MS)
            d->threshold = MAX_THRESHOLD_MS;
    }
    d->has_last_update = 1;
    d->last_update_ms = arrival_ms;
}

/* add_all(send_times, arrivals, now): a feedback's received packets, in arrival
 * order (the grouping; each complete group goes to detector_group). */
static PyObject *Detector_add_all(Detector *d, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "add_all(send_times, arrivals, now)");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[2]);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *sends_fast = PySequence_Fast(args[0], "send_times must be a sequence");
    if (sends_fast == NULL)
        return NULL;
    PyObject *arrivals_fast = PySequence_Fast(args[1], "arrivals must be a sequence");
    if (arrivals_fast == NULL) {
        Py_DECREF(sends_fast);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sends_fast);
    if (PySequence_Fast_GET_SIZE(arrivals_fast) < n)
        n = PySequence_Fast_GET_SIZE(arrivals_fast); /* zip: the shorter */
    double send_stack[256], arrival_stack[256];
    double *sends = doubles_of(sends_fast, n, send_stack, 256);
    double *arrivals = sends == NULL ? NULL : doubles_of(arrivals_fast, n, arrival_stack, 256);
    PyObject *result = NULL;
    if (arrivals == NULL)
        goto done; /* nothing changed: every value is read before any state */
    double first_send = d->first_send;
    double group_end = first_send + GROUP_S;
    double last_send = d->last_send, first_arrival = d->first_arrival;
    double last_arrival = d->last_arrival, last_now = d->last_now;
    int has_previous = d->has_previous;
    double previous_send = d->previous_send, previous_arrival = d->previous_arrival;
    double previous_now = d->previous_now;
    long reordered = d->reordered;
    for (Py_ssize_t k = 0; k < n; k++) {
        double send = sends[k], arrival = arrivals[k];
        if (first_send <= send && send <= group_end) { /* the current group goes on */
            if (send > last_send)
                last_send = send;
            last_arrival = arrival;
            last_now = now;
            continue;
        }
        if (send < first_send - ARRIVAL_JUMP_S) { /* no group yet, or our clock went back */
            has_previous = 0;
            reordered = 0;
            first_send = last_send = send;
            group_end = first_send + GROUP_S;
            first_arrival = last_arrival = arrival;
            last_now = now;
            continue;
        }
        if (send < first_send)
            continue; /* sent before the current group: out of order, ignored */
        double send_delta = send - last_send;
        int same;
        if (send_delta == 0) {
            same = 1;
        } else {
            double arrival_delta = arrival - last_arrival;
            same = (arrival_delta - send_delta < 0 && arrival_delta <= BURST_S &&
                    arrival - first_arrival < MAX_BURST_S) ||
                   !(send - first_send > GROUP_S);
        }
        if (same) { /* sent later but arrived in the same burst */
            if (send > last_send)
                last_send = send;
            last_arrival = arrival;
            last_now = now;
            continue;
        }
        if (has_previous) { /* the current group is complete */
            double group_send_delta = last_send - previous_send;
            double arrival_delta = last_arrival - previous_arrival;
            if (fabs(arrival_delta - (last_now - previous_now)) >= ARRIVAL_JUMP_S) {
                has_previous = 0; /* the receiver's clock jumped (or hostile feedback) */
                reordered = 0;
                first_send = group_end = INFINITY;
                continue;
            }
            if (arrival_delta < 0) {
                reordered += 1;
                if (reordered >= REORDERED_RESET) {
                    has_previous = 0;
                    reordered = 0;
                    first_send = group_end = INFINITY;
                }
                continue;
            }
            reordered = 0;
            detector_group(d, arrival, group_send_delta, arrival_delta);
        }
        has_previous = 1;
        previous_send = last_send;
        previous_arrival = last_arrival;
        previous_now = last_now;
        first_send = last_send = send;
        group_end = first_send + GROUP_S;
        first_arrival = last_arrival = arrival;
        last_now = now;
    }
    d->first_send = first_send;
    d->last_send = last_send;
    d->first_arrival = first_arrival;
    d->last_arrival = last_arrival;
    d->last_now = last_now;
    d->has_previous = has_previous;
    d->previous_send = previous_send;
    d->previous_arrival = previous_arrival;
    d->previous_now = previous_now;
    d->reordered = reordered;
    result = Py_NewRef(Py_None);
done:
    if (sends != NULL && sends != send_stack)
        PyMem_Free(sends);
    if (arrivals != NULL && arrivals != arrival_stack)
        PyMem_Free(arrivals);
    Py_DECREF(sends_fast);
    Py_DECREF(arrivals_fast);
    return result;
}

static PyObject *Detector_get_state(Detector *d, void *closure)
{
    return Py_NewRef(state_names[d->state]);
}

static PyObject *Detector_get_threshold(Detector *d, void *closure)
{
    return PyFloat_FromDouble(d->threshold);
}

static PyMethodDef Detector_methods[] = {
    {"add_all", (PyCFunction)(void (*)(void))Detector_add_all, METH_FASTCALL,
     "Add a feedback's received packets (finite times), in arrival order."},
    {"reset", (PyCFunction)Detector_reset, METH_NOARGS,
     "Forget the send-time groups (the trendline goes on)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Detector_getset[] = {
    {"state", (getter)Detector_get_state, NULL, "normal, overusing or underusing", NULL},
    {"threshold", (getter)Detector_get_threshold, NULL, "the adaptive threshold (ms)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject DetectorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sfu.native._gcc.DelayDetector",
    .tp_doc = "gcc_delay.DelayDetector in C: send-time groups, trendline, overuse detector.",
    .tp_basicsize = sizeof(Detector),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Detector_new,
    .tp_methods = Detector_methods,
    .tp_getset = Detector_getset,
};

/* ---- the module ------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"tcc_chunk_walk", tcc_chunk_walk, METH_VARARGS,
     "tcc_chunk_walk(data, i, end, status_count) -> (end offset, delta bytes, symbols)"},
    {"history_columns", history_columns, METH_VARARGS,
     "history_columns(ring, mask, newest, oldest, base_seq, symbols, deltas, reference)"},
    {"split_feedback", (PyCFunction)(void (*)(void))split_feedback, METH_FASTCALL,
     "split_feedback(sequences, send_times, sizes, arrivals, probes, since)"},
    {"arrival_order", (PyCFunction)(void (*)(void))arrival_order, METH_FASTCALL,
     "arrival_order(arrivals, sequences, send_times, sizes, probes, in_sequence)"},
    {"acked_windows", acked_windows, METH_VARARGS,
     "acked_windows(arrivals, sizes, extra, last, window_s, total, kbps, variance)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_gcc",
    "transport-cc feedback's per-packet loops in C (twins: see sfu/native/_gcc.c)", -1, methods,
};

PyMODINIT_FUNC PyInit__gcc(void)
{
    static const char *names[3] = {"normal", "overusing", "underusing"};
    for (int k = 0; k < 3; k++) {
        if (state_names[k] == NULL) {
            state_names[k] = PyUnicode_InternFromString(names[k]);
            if (state_names[k] == NULL)
                return NULL;
        }
    }
    if (PyType_Ready(&DetectorType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "DelayDetector", (PyObject *)&DetectorType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
