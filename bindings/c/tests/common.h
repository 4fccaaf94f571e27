/* What the C tests share: checks that count, the numbered message pattern (the same as
 * examples/rust_peer.rs), a checksum, and unique segment names. */
#ifndef SHMBUS_TEST_COMMON_H
#define SHMBUS_TEST_COMMON_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmbus.h"

static int g_passed, g_failed;

/* A condition that must hold. */
#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (cond) {                                                                 \
            g_passed++;                                                             \
        } else {                                                                    \
            g_failed++;                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                           \
    } while (0)

/* A call that must return `expected`. */
#define EXPECT(call, expected)                                                       \
    do {                                                                             \
        ShmbusStatus s_ = (call);                                                    \
        if (s_ == (expected)) {                                                      \
            g_passed++;                                                              \
        } else {                                                                     \
            g_failed++;                                                              \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (%s)\n", __FILE__,   \
                    __LINE__, #call, shmbus_status_name(s_), shmbus_status_name(expected), \
                    shmbus_last_error_message());                                    \
        }                                                                            \
    } while (0)

#define OK(call) EXPECT(call, SHMBUS_STATUS_OK)

/* A call that must succeed for the test to go on at all. */
#define MUST(call)                                                                   \
    do {                                                                             \
        ShmbusStatus s_ = (call);                                                    \
        if (s_ != SHMBUS_STATUS_OK) {                                                \
            fprintf(stderr, "%s:%d: %s returned %s (%s); giving up\n", __FILE__,     \
                    __LINE__, #call, shmbus_status_name(s_), shmbus_last_error_message()); \
            exit(2);                                                                 \
        }                                                                            \
    } while (0)

/* The last error message contains `part`. */
#define MESSAGE_HAS(part) CHECK(strstr(shmbus_last_error_message(), (part)) != NULL)

/* Message `i` of the pattern, written into `buf` (at least 105 bytes); returns its length. */
static inline size_t pattern(uint64_t i, uint8_t *buf) {
    size_t len = 8 + (size_t)(i * 13 % 97);
    for (int b = 0; b < 8; b++) buf[b] = (uint8_t)(i >> (8 * b));
    for (size_t j = 8; j < len; j++) buf[j] = (uint8_t)((i * 31 + j * 7) & 0xff);
    return len;
}

#define PATTERN_MAX 105

/* Whether `data`/`len` is message `i` of the pattern. */
static inline int is_pattern(uint64_t i, const uint8_t *data, size_t len) {
    uint8_t want[PATTERN_MAX];
    size_t n = pattern(i, want);
    return len == n && data != NULL && memcmp(data, want, n) == 0;
}

/* FNV-1a, continued from `h` (start with FNV_START). */
#define FNV_START UINT64_C(0xcbf29ce484222325)
static inline uint64_t fnv(uint64_t h, const uint8_t *data, size_t len) {
    for (size_t k = 0; k < len; k++) h = (h ^ data[k]) * UINT64_C(0x100000001b3);
    return h;
}

/* A segment name unique to this process: "ctest-<pid>-<what>". */
static inline const char *uname(const char *what) {
    static char names[64][96];
    static int next;
    char *n = names[next++ % 64];
    snprintf(n, sizeof names[0], "ctest-%d-%s", (int)getpid(), what);
    return n;
}

/* The closing line that CI reads; the exit status. */
static inline int finish(const char *what) {
    printf("%s: %d passed, %d failed\n", what, g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

#endif
