/* rtpext.h: finding a header extension element's 2-byte value, shared by the compiled
 * modules that need it (sfu.native._rtp's element_value, sfu.native._ingress).  Include
 * after Python.h, with ONE_BYTE_PROFILE defined.  A header beside the sources is part of
 * every module's freshness check (sfu/native/build.py `stale`). */
#ifndef VISITROOM_RTPEXT_H
#define VISITROOM_RTPEXT_H

/* The offset in p[0..n) of the 2-byte value of element `ext_id` in the extension data
 * [i, end) of `profile` (RFC 8285 one- or two-byte elements), or -1: none, another length,
 * or a malformed block.  Never reads outside [i, end), and end <= n. */
static Py_ssize_t
element_in(const unsigned char *p, Py_ssize_t n, long profile, Py_ssize_t i, Py_ssize_t end,
           long ext_id)
{
    if (end > n || i < 0)
        return -1;
    if (profile == ONE_BYTE_PROFILE) {
        while (i < end) {
            int b = p[i];
            if (b == 0) {
                i += 1;
                continue;
            }
            int found = b >> 4;
            if (found == 15 || found == 0)
                return -1;
            int length = (b & 0x0F) + 1;
            if (found == ext_id)
                return (length == 2 && i + 3 <= end) ? i + 1 : -1;
            i += 1 + length;
        }
        return -1;
    }
    if ((profile & 0xFFF0) == 0x1000) {
        while (i + 1 < end) {
            int found = p[i];
            if (found == 0) {
                i += 1;
                continue;
            }
            int length = p[i + 1];
            if (found == ext_id)
                return (length == 2 && i + 4 <= end) ? i + 2 : -1;
            i += 2 + length;
        }
    }
    return -1;
}

#endif
