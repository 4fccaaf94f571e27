/* Ping-pong latency through the C API: this process publishes a word on bus NAME-ping and spins
 * on NAME-pong for the echo, which a child process (this program again) sends back. The loop is
 * the one of examples/pingpong.rs, the same through the Rust API, so that latency.sh can give
 * the cost of the C boundary as a ratio measured in the same run.
 *
 *   pingpong NAME PAYLOAD ITERS          prints "c PAYLOAD: one-way p50 N ns, p99 N ns"
 *   pingpong --rate NAME PAYLOAD COUNT   prints "c PAYLOAD: publish N ns" (mean, no subscriber)
 *
 * With PINGPONG_ECHO=PATH the echo is that program instead (examples/pingpong.rs takes the same
 * arguments), and the reverse with the Rust twin: mixed pairs tell which side costs what.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

#define STOP UINT64_MAX

static void must(ShmbusStatus s, const char *what) {
    if (s != SHMBUS_STATUS_OK) {
        fprintf(stderr, "pingpong: %s: %s: %s\n", what, shmbus_status_name(s),
                shmbus_last_error_message());
        exit(1);
    }
}

static void pin(int core) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    sched_setaffinity(0, sizeof set, &set); /* best effort, as the Rust twin */
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spins until a message arrives; returns its first word. */
static uint64_t wait_word(ShmbusSubscriber *sub) {
    ShmbusReceived r;
    for (;;) {
        must(shmbus_subscriber_try_recv(sub, &r), "try_recv");
        if (r.event == SHMBUS_EVENT_MESSAGE) {
            uint64_t w;
            memcpy(&w, r.data, 8);
            return w;
        }
    }
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void names(const char *base, char *ping, char *pong) {
    snprintf(ping, 128, "%s-ping", base);
    snprintf(pong, 128, "%s-pong", base);
}

static int echo(const char *base, size_t payload) {
    char ping[128], pong[128];
    names(base, ping, pong);
    pin(1);
    ShmbusBus *a, *b;
    must(shmbus_bus_open(ping, 0, &a), "open ping");
    must(shmbus_bus_open(pong, 0, &b), "open pong");
    ShmbusSubscriber *sub;
    ShmbusPublisher *pub;
    must(shmbus_bus_subscribe(a, SHMBUS_START_NEXT, 0, 0, &sub), "subscribe");
    must(shmbus_bus_publisher(b, &pub), "publisher");
    uint8_t buf[4096] = {0};
    must(shmbus_publisher_publish(pub, buf, payload, NULL), "ready"); /* word 0: ready */
    for (;;) {
        uint64_t w = wait_word(sub);
        if (w == STOP) break;
        memcpy(buf, &w, 8);
        must(shmbus_publisher_publish(pub, buf, payload, NULL), "echo");
    }
    shmbus_publisher_free(pub);
    shmbus_subscriber_free(sub);
    shmbus_bus_free(a);
    shmbus_bus_free(b);
    return 0;
}

static int run(const char *base, size_t payload, uint64_t iters) {
    char ping[128], pong[128], size[32];
    names(base, ping, pong);
    ShmbusBus *a, *b;
    must(shmbus_bus_create(ping, 1024, 4096, 0, 0, &a), "create ping");
    must(shmbus_bus_create(pong, 1024, 4096, 0, 0, &b), "create pong");
    ShmbusPublisher *pub;
    ShmbusSubscriber *sub;
    must(shmbus_bus_publisher(a, &pub), "publisher");
    must(shmbus_bus_subscribe(b, SHMBUS_START_NEXT, 0, 0, &sub), "subscribe");
    snprintf(size, sizeof size, "%zu", payload);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* PINGPONG_ECHO: another echo program taking the same arguments (the Rust twin), to
         * tell which side of the boundary a difference is on. */
        const char *echo_exe = getenv("PINGPONG_ECHO");
        if (!echo_exe) echo_exe = "/proc/self/exe";
        execl(echo_exe, "pingpong", "--echo", base, size, (char *)NULL);
        _exit(127);
    }
    pin(0);
    if (wait_word(sub) != 0) {
        fprintf(stderr, "pingpong: the echo's first message is not its ready word\n");
        return 1;
    }
    uint64_t warmup = iters / 10 < 100 ? 100 : iters / 10;
    uint64_t *rtt = malloc(iters * sizeof *rtt);
    uint8_t buf[4096] = {0};
    uint64_t t = now_ns();
    for (uint64_t i = 0; i < warmup + iters; i++) {
        uint64_t word = i + 1;
        memcpy(buf, &word, 8);
        must(shmbus_publisher_publish(pub, buf, payload, NULL), "ping");
        if (wait_word(sub) != word) {
            fprintf(stderr, "pingpong: wrong answer to %" PRIu64 "\n", word);
            return 1;
        }
        uint64_t t2 = now_ns();
        if (i >= warmup) rtt[i - warmup] = t2 - t;
        t = t2;
    }
    uint64_t stop = STOP;
    memcpy(buf, &stop, 8);
    must(shmbus_publisher_publish(pub, buf, payload, NULL), "stop");
    int status;
    waitpid(pid, &status, 0);
    qsort(rtt, iters, sizeof *rtt, cmp);
    printf("c %zu: one-way p50 %" PRIu64 " ns, p99 %" PRIu64 " ns\n", payload,
           rtt[iters / 2] / 2, rtt[iters * 99 / 100] / 2);
    free(rtt);
    shmbus_publisher_free(pub);
    shmbus_subscriber_free(sub);
    shmbus_bus_free(a);
    shmbus_bus_free(b);
    shmbus_remove(ping);
    shmbus_remove(pong);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

/* Publish rate: `count` messages of `payload` bytes into a bus of 1024 slots with no
 * subscriber, as fast as one producer can; the mean time per publish. */
static int rate(const char *base, size_t payload, uint64_t count) {
    char name[128];
    snprintf(name, sizeof name, "%s-rate", base);
    ShmbusBus *bus;
    ShmbusPublisher *pub;
    must(shmbus_bus_create(name, 1024, 4096, 0, 0, &bus), "create");
    must(shmbus_bus_publisher(bus, &pub), "publisher");
    pin(0);
    uint8_t buf[4096] = {0};
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < count; i++) {
        memcpy(buf, &i, 8);
        must(shmbus_publisher_publish(pub, buf, payload, NULL), "publish");
    }
    uint64_t t1 = now_ns();
    printf("c %zu: publish %.1f ns\n", payload, (double)(t1 - t0) / (double)count);
    shmbus_publisher_free(pub);
    shmbus_bus_free(bus);
    shmbus_remove(name);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--echo") == 0) return echo(argv[2], strtoull(argv[3], NULL, 10));
    if (argc == 5 && strcmp(argv[1], "--rate") == 0) {
        size_t payload = strtoull(argv[3], NULL, 10);
        uint64_t count = strtoull(argv[4], NULL, 10);
        if (payload < 8 || payload > 4096 || count == 0) {
            fprintf(stderr, "pingpong: PAYLOAD is 8 to 4096 bytes, COUNT at least 1\n");
            return 2;
        }
        return rate(argv[2], payload, count);
    }
    if (argc != 4) {
        fprintf(stderr, "usage: pingpong NAME PAYLOAD ITERS\n");
        return 2;
    }
    size_t payload = strtoull(argv[2], NULL, 10);
    uint64_t iters = strtoull(argv[3], NULL, 10);
    if (payload < 8 || payload > 4096 || iters == 0) {
        fprintf(stderr, "pingpong: PAYLOAD is 8 to 4096 bytes, ITERS at least 1\n");
        return 2;
    }
    return run(argv[1], payload, iters);
}
