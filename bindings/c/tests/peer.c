/* The C side of the cross-process tests: two C processes over a bus and over a queue (this
 * program starting itself again with fork and exec), and each half of a C <-> Rust exchange
 * with examples/rust_peer.rs. Every message is the numbered pattern of common.h, checked byte
 * for byte; each role prints the FNV-1a checksum of what it handled, which .ci/bindings-c.sh
 * compares with the Rust side's.
 *
 *   peer bus-pub NAME N        create bus NAME, publish messages 0..N, leave it
 *   peer bus-sub NAME N        open bus NAME read-only, read messages 0..N from the oldest
 *   peer queue-create NAME N   create queue NAME with room for N items
 *   peer queue-send NAME N     open queue NAME, send items 0..N
 *   peer queue-recv NAME N     open queue NAME, receive items 0..N in order
 *   peer two-bus NAME N        a child process publishes N messages into a small bus while
 *                              this one subscribes: every sequence number received intact or
 *                              counted lost, exactly
 *   peer two-queue NAME N      a child process sends N items through a small queue: each
 *                              received once, in order
 *   peer lanes-pub NAME N      open lanes segment NAME, acquire a lane, publish records 0..N,
 *                              close; print each as `shmbus pop --json --format hex` prints it
 *   peer lanes-pop NAME N      open lanes segment NAME as its consumer, receive records 0..N
 *                              (then the lane's close), print each as `lanes-pub` does
 *   peer lanes-hex - N         print records 0..N in hex, one a line (`shmbus publish --hex`)
 *   peer two-lanes NAME N      a child process publishes N records into a small lane as fast
 *                              as it can while this one consumes through the readiness
 *                              descriptor: each record received intact and in order, or
 *                              counted dropped, exactly
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/wait.h>

#include "common.h"

/* How long one receive may wait for a partner before the test fails (never a pace: each wait
 * ends as soon as something is there). */
#define PATIENCE_NS 20000000000ull

static uint64_t slots_for(uint64_t n) {
    uint64_t s = 8;
    while (s < n) s <<= 1;
    return s;
}

static int bus_pub(const char *name, uint64_t n, int created) {
    ShmbusBus *bus = NULL;
    if (created)
        MUST(shmbus_bus_open(name, 0, &bus));
    else
        MUST(shmbus_bus_create(name, slots_for(n), 0, 0, 0, &bus));
    ShmbusPublisher *p = NULL;
    MUST(shmbus_bus_publisher(bus, &p));
    uint64_t sum = FNV_START;
    uint8_t m[PATTERN_MAX];
    for (uint64_t i = 0; i < n; i++) {
        size_t len = pattern(i, m);
        uint64_t seq = UINT64_MAX;
        OK(shmbus_publisher_publish(p, m, len, &seq));
        CHECK(seq == i);
        sum = fnv(sum, m, len);
    }
    shmbus_publisher_free(p);
    shmbus_bus_free(bus);
    printf("bus-pub %s: checksum %016" PRIx64 "\n", name, sum);
    return finish("bus-pub");
}

static int bus_sub(const char *name, uint64_t n) {
    ShmbusBus *bus = NULL;
    MUST(shmbus_bus_open(name, SHMBUS_READ_ONLY, &bus));
    ShmbusSubscriber *sub = NULL;
    MUST(shmbus_bus_subscribe(bus, SHMBUS_START_OLDEST, 0, SHMBUS_LAP_POLICY_OLDEST, &sub));
    uint64_t sum = FNV_START;
    for (uint64_t i = 0; i < n; i++) {
        ShmbusReceived r;
        OK(shmbus_subscriber_recv_timeout(sub, PATIENCE_NS, &r));
        if (r.event != SHMBUS_EVENT_MESSAGE || r.seq != i) {
            fprintf(stderr, "bus-sub: expected message %" PRIu64 ", got event %d seq %" PRIu64 "\n",
                    i, (int)r.event, r.seq);
            g_failed++;
            break;
        }
        CHECK(is_pattern(i, r.data, r.len));
        sum = fnv(sum, r.data, r.len);
    }
    shmbus_subscriber_free(sub);
    shmbus_bus_free(bus);
    printf("bus-sub %s: checksum %016" PRIx64 "\n", name, sum);
    return finish("bus-sub");
}

static int queue_create(const char *name, uint64_t n) {
    ShmbusQueue *q = NULL;
    MUST(shmbus_queue_create(name, slots_for(n), 0, 0, 0, &q));
    shmbus_queue_free(q);
    return finish("queue-create");
}

static int queue_send(const char *name, uint64_t n) {
    ShmbusQueue *q = NULL;
    MUST(shmbus_queue_open(name, 0, &q));
    ShmbusQueueSender *tx = NULL;
    MUST(shmbus_queue_sender(q, &tx));
    uint64_t sum = FNV_START;
    uint8_t m[PATTERN_MAX];
    for (uint64_t i = 0; i < n; i++) {
        size_t len = pattern(i, m);
        ShmbusStatus st = shmbus_queue_send_timeout(tx, m, len, PATIENCE_NS);
        if (st != SHMBUS_STATUS_OK) {
            fprintf(stderr, "queue-send: item %" PRIu64 ": %s (%s)\n", i, shmbus_status_name(st),
                    shmbus_last_error_message());
            g_failed++;
            break;
        }
        g_passed++;
        sum = fnv(sum, m, len);
    }
    shmbus_queue_sender_free(tx);
    shmbus_queue_free(q);
    printf("queue-send %s: checksum %016" PRIx64 "\n", name, sum);
    return finish("queue-send");
}

/* Receives items 0..n in order from `rx`; returns their checksum. */
static uint64_t receive_items(ShmbusQueueReceiver *rx, uint64_t n) {
    uint64_t sum = FNV_START;
    for (uint64_t i = 0; i < n; i++) {
        ShmbusReceived r;
        OK(shmbus_queue_recv_timeout(rx, PATIENCE_NS, &r));
        if (r.event != SHMBUS_EVENT_MESSAGE) {
            fprintf(stderr, "queue: expected item %" PRIu64 ", got event %d\n", i, (int)r.event);
            g_failed++;
            break;
        }
        CHECK(is_pattern(i, r.data, r.len));
        sum = fnv(sum, r.data, r.len);
    }
    return sum;
}

static int queue_recv(const char *name, uint64_t n) {
    ShmbusQueue *q = NULL;
    MUST(shmbus_queue_open(name, 0, &q));
    ShmbusQueueReceiver *rx = NULL;
    MUST(shmbus_queue_receiver(q, &rx));
    uint64_t sum = receive_items(rx, n);
    /* Each item went to this receiver only: nothing is left. */
    ShmbusQueueInfo info;
    OK(shmbus_queue_info(q, &info));
    CHECK(info.len == 0);
    shmbus_queue_receiver_free(rx);
    shmbus_queue_free(q);
    printf("queue-recv %s: checksum %016" PRIx64 "\n", name, sum);
    return finish("queue-recv");
}

/* Starts this program again as `self ROLE NAME N`, its stdout a pipe to us; returns the pid
 * and the read end in *out. */
static pid_t spawn(const char *self, const char *role, const char *name, uint64_t n, int *out) {
    int fds[2];
    if (pipe(fds) != 0) {
        perror("pipe");
        exit(2);
    }
    char count[32];
    snprintf(count, sizeof count, "%" PRIu64, n);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl(self, self, role, name, count, (char *)NULL);
        perror("exec");
        _exit(127);
    }
    close(fds[1]);
    *out = fds[0];
    return pid;
}

/* Waits for the child; true if it exited with status 0. Echoes its output. */
static int reap(pid_t pid, int out) {
    char buf[4096];
    ssize_t got;
    while ((got = read(out, buf, sizeof buf)) > 0 || (got < 0 && errno == EINTR))
        if (got > 0) fwrite(buf, 1, (size_t)got, stdout);
    close(out);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* A child publishes n messages into a bus of 64 slots; this process subscribes from sequence
 * 0 before the child starts and accounts for every sequence number: received intact (checked
 * against the pattern) or reported lost by a lap. */
static int two_bus(const char *self, const char *name, uint64_t n) {
    ShmbusBus *bus = NULL;
    MUST(shmbus_bus_create(name, 64, 0, 0, 0, &bus));
    ShmbusSubscriber *sub = NULL;
    MUST(shmbus_bus_subscribe(bus, SHMBUS_START_SEQUENCE, 0, SHMBUS_LAP_POLICY_OLDEST, &sub));
    int out;
    pid_t pid = spawn(self, "bus-pub-open", name, n, &out);
    uint64_t received = 0, lost = 0, laps = 0, expected = 0;
    while (received + lost < n) {
        ShmbusReceived r;
        OK(shmbus_subscriber_recv_timeout(sub, PATIENCE_NS, &r));
        if (r.event == SHMBUS_EVENT_MESSAGE) {
            CHECK(r.seq == expected);
            if (!is_pattern(r.seq, r.data, r.len)) {
                fprintf(stderr, "two-bus: message %" PRIu64 " differs from the pattern\n", r.seq);
                g_failed++;
            }
            received++;
            expected = r.seq + 1;
        } else if (r.event == SHMBUS_EVENT_LAPPED) {
            CHECK(r.seq == expected + r.lost);
            laps++;
            lost += r.lost;
            expected = r.seq;
        } else if (r.event == SHMBUS_EVENT_EMPTY) {
            fprintf(stderr, "two-bus: nothing for %llu s after %" PRIu64 " of %" PRIu64 "\n",
                    PATIENCE_NS / 1000000000ull, received + lost, n);
            g_failed++;
            break;
        }
        /* CLOSED: the child has not attached yet, or has left after its last message, which
         * is still to be read; either way, wait on. */
    }
    CHECK(received + lost == n && expected == n);
    CHECK(reap(pid, out));
    ShmbusSubscriberStats stats;
    OK(shmbus_subscriber_stats(sub, &stats));
    CHECK(stats.received == received && stats.lost == lost && stats.laps == laps);
    printf("two-bus: %" PRIu64 " received, %" PRIu64 " lost in %" PRIu64 " laps\n", received,
           lost, laps);
    shmbus_subscriber_free(sub);
    shmbus_bus_free(bus);
    OK(shmbus_remove(name));
    return finish("two-bus");
}

/* A child sends n items through a queue of 16; this process receives each exactly once, in
 * order, then sees the queue closed once the child has gone. A sender of this process's own,
 * sending nothing, keeps the queue open until then (without it, a receive before the child
 * attaches would find the queue closed). */
static int two_queue(const char *self, const char *name, uint64_t n) {
    ShmbusQueue *q = NULL;
    MUST(shmbus_queue_create(name, 16, 0, 0, 0, &q));
    ShmbusQueueReceiver *rx = NULL;
    ShmbusQueueSender *hold = NULL;
    MUST(shmbus_queue_receiver(q, &rx));
    MUST(shmbus_queue_sender(q, &hold));
    int out;
    pid_t pid = spawn(self, "queue-send", name, n, &out);
    uint64_t sum = receive_items(rx, n);
    CHECK(reap(pid, out));
    shmbus_queue_sender_free(hold);
    ShmbusReceived r;
    OK(shmbus_queue_recv_timeout(rx, PATIENCE_NS, &r));
    CHECK(r.event == SHMBUS_EVENT_CLOSED);
    printf("two-queue: %" PRIu64 " items, checksum %016" PRIx64 "\n", n, sum);
    shmbus_queue_receiver_free(rx);
    shmbus_queue_free(q);
    OK(shmbus_remove(name));
    return finish("two-queue");
}

/* One lanes record as `shmbus pop --json --format hex` prints it. */
static void print_lane_record(uint32_t lane, const uint8_t *data, size_t len) {
    printf("{\"lane\":%u,\"len\":%zu,\"hex\":\"", lane, len);
    for (size_t k = 0; k < len; k++) printf("%02x", data[k]);
    printf("\"}\n");
}

static int lanes_pub(const char *name, uint64_t n) {
    ShmbusLanes *l = NULL;
    MUST(shmbus_lanes_open(name, 0, &l));
    ShmbusLanePublisher *p = NULL;
    MUST(shmbus_lanes_acquire(l, &p));
    uint32_t lane = 0;
    OK(shmbus_lane_publisher_lane(p, &lane));
    uint8_t m[PATTERN_MAX];
    for (uint64_t i = 0; i < n; i++) {
        size_t len = pattern(i, m);
        bool queued = false;
        OK(shmbus_lane_publisher_publish(p, m, len, &queued));
        /* The lane is made large enough for all: a drop is a failure here. */
        CHECK(queued);
        print_lane_record(lane, m, len);
    }
    uint64_t dropped = 1;
    OK(shmbus_lane_publisher_dropped(p, &dropped));
    CHECK(dropped == 0);
    shmbus_lane_publisher_close(p);
    shmbus_lanes_free(l);
    return finish("lanes-pub");
}

static int lanes_pop(const char *name, uint64_t n) {
    ShmbusLanes *l = NULL;
    MUST(shmbus_lanes_open(name, 0, &l));
    ShmbusLaneConsumer *c = NULL;
    MUST(shmbus_lanes_consumer(l, &c));
    ShmbusLaneReceived r;
    uint32_t lane = 0;
    for (uint64_t i = 0; i < n; i++) {
        OK(shmbus_lane_consumer_recv_timeout(c, PATIENCE_NS, &r));
        if (r.event != SHMBUS_LANE_EVENT_RECORD) {
            fprintf(stderr, "lanes-pop: expected record %" PRIu64 ", got event %d\n", i, (int)r.event);
            g_failed++;
            break;
        }
        if (i == 0) lane = r.lane;
        CHECK(r.lane == lane);
        CHECK(is_pattern(i, r.data, r.len));
        print_lane_record(r.lane, r.data, r.len);
        OK(shmbus_lane_consumer_ack(c));
    }
    /* The producer closed its lane after its last record, dropping none. */
    OK(shmbus_lane_consumer_recv_timeout(c, PATIENCE_NS, &r));
    CHECK(r.event == SHMBUS_LANE_EVENT_CLOSED && r.lane == lane && r.dropped == 0 && !r.producer_died);
    OK(shmbus_lane_consumer_try_recv(c, &r));
    CHECK(r.event == SHMBUS_LANE_EVENT_EMPTY);
    shmbus_lane_consumer_free(c);
    shmbus_lanes_free(l);
    return finish("lanes-pop");
}

static int lanes_hex(uint64_t n) {
    uint8_t m[PATTERN_MAX];
    for (uint64_t i = 0; i < n; i++) {
        size_t len = pattern(i, m);
        for (size_t k = 0; k < len; k++) printf("%02x", m[k]);
        printf("\n");
    }
    return 0;
}

/* The child of two-lanes: publishes records 0..n without ever waiting, counting its drops. */
static int lanes_flood(const char *name, uint64_t n) {
    ShmbusLanes *l = NULL;
    MUST(shmbus_lanes_open(name, 0, &l));
    ShmbusLanePublisher *p = NULL;
    MUST(shmbus_lanes_acquire(l, &p));
    uint8_t m[PATTERN_MAX];
    uint64_t full = 0;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = pattern(i, m);
        bool queued = false;
        OK(shmbus_lane_publisher_publish(p, m, len, &queued));
        full += !queued;
    }
    uint64_t dropped = 0;
    OK(shmbus_lane_publisher_dropped(p, &dropped));
    CHECK(dropped == full);
    shmbus_lane_publisher_close(p);
    shmbus_lanes_free(l);
    printf("lanes-flood: %" PRIu64 " published, %" PRIu64 " dropped on a full lane\n", n, full);
    return finish("lanes-flood");
}

/* A child floods a lane of 4 KiB; this process consumes through the readiness descriptor and
 * accounts for every record: received intact and in order, or in the close's drop count. */
static int two_lanes(const char *self, const char *name, uint64_t n) {
    ShmbusLanes *l = NULL;
    MUST(shmbus_lanes_create(name, 2, 4096, 0, &l));
    ShmbusLaneConsumer *c = NULL;
    MUST(shmbus_lanes_consumer(l, &c));
    int fd = -1;
    OK(shmbus_lane_consumer_fd(c, &fd));
    int out;
    pid_t pid = spawn(self, "lanes-flood", name, n, &out);
    uint64_t received = 0, dropped = 0, next = 0;
    for (;;) {
        ShmbusLaneReceived r;
        OK(shmbus_lane_consumer_recv_timeout(c, PATIENCE_NS, &r));
        if (r.event == SHMBUS_LANE_EVENT_RECORD) {
            uint64_t i = 0;
            for (int b = 0; b < 8 && (size_t)b < r.len; b++) i |= (uint64_t)r.data[b] << (8 * b);
            if (i < next || !is_pattern(i, r.data, r.len)) {
                fprintf(stderr, "two-lanes: record %" PRIu64 " out of order or not intact\n", i);
                g_failed++;
            }
            next = i + 1;
            received++;
        } else if (r.event == SHMBUS_LANE_EVENT_CLOSED) {
            CHECK(!r.producer_died);
            dropped = r.dropped;
            break;
        } else {
            fprintf(stderr, "two-lanes: nothing for %llu s after %" PRIu64 " records\n",
                    PATIENCE_NS / 1000000000ull, received);
            g_failed++;
            break;
        }
    }
    CHECK(received + dropped == n && received > 0);
    CHECK(reap(pid, out));
    printf("two-lanes: %" PRIu64 " records: %" PRIu64 " received, %" PRIu64 " dropped\n", n, received,
           dropped);
    shmbus_lane_consumer_free(c);
    shmbus_lanes_free(l);
    OK(shmbus_remove(name));
    return finish("two-lanes");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: peer ROLE NAME N\n");
        return 2;
    }
    const char *role = argv[1], *name = argv[2];
    uint64_t n = strtoull(argv[3], NULL, 10);
    if (strcmp(role, "bus-pub") == 0) return bus_pub(name, n, 0);
    if (strcmp(role, "bus-pub-open") == 0) return bus_pub(name, n, 1);
    if (strcmp(role, "bus-sub") == 0) return bus_sub(name, n);
    if (strcmp(role, "queue-create") == 0) return queue_create(name, n);
    if (strcmp(role, "queue-send") == 0) return queue_send(name, n);
    if (strcmp(role, "queue-recv") == 0) return queue_recv(name, n);
    if (strcmp(role, "two-bus") == 0) return two_bus("/proc/self/exe", name, n);
    if (strcmp(role, "two-queue") == 0) return two_queue("/proc/self/exe", name, n);
    if (strcmp(role, "lanes-pub") == 0) return lanes_pub(name, n);
    if (strcmp(role, "lanes-pop") == 0) return lanes_pop(name, n);
    if (strcmp(role, "lanes-hex") == 0) return lanes_hex(n);
    if (strcmp(role, "lanes-flood") == 0) return lanes_flood(name, n);
    if (strcmp(role, "two-lanes") == 0) return two_lanes("/proc/self/exe", name, n);
    fprintf(stderr, "peer: unknown role %s\n", role);
    return 2;
}
