/* Every function of the C API and its error paths, in one process.
 *
 *   api [TYPED]   TYPED: the base name of the typed segments `rust_peer typed TYPED` made
 *                 (TYPED-bus, TYPED-queue, TYPED-board); without it those checks are skipped.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common.h"

static void test_status_and_version(void) {
    /* Nothing failed yet on this thread. */
    CHECK(strcmp(shmbus_last_error_message(), "") == 0);
    CHECK(strcmp(shmbus_version(), "0.1.0") == 0);
    CHECK(strcmp(shmbus_status_name(SHMBUS_STATUS_OK), "SHMBUS_STATUS_OK") == 0);
    CHECK(strcmp(shmbus_status_name(SHMBUS_STATUS_WRONG_KIND), "SHMBUS_STATUS_WRONG_KIND") == 0);
    CHECK(strcmp(shmbus_status_name(12345), "SHMBUS_STATUS_UNKNOWN") == 0);
    /* The codes are stable numbers. */
    CHECK(SHMBUS_STATUS_NOT_FOUND == 11 && SHMBUS_STATUS_PANIC == 99);
}

static void test_argument_checks(void) {
    ShmbusBus *bus = NULL;
    EXPECT(shmbus_bus_open(NULL, 0, &bus), SHMBUS_STATUS_NULL_ARGUMENT);
    MESSAGE_HAS("`name` is NULL");
    CHECK(bus == NULL);
    EXPECT(shmbus_bus_open("anything", 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    MESSAGE_HAS("`out` is NULL");
    EXPECT(shmbus_bus_open("caf\xff", 0, &bus), SHMBUS_STATUS_INVALID_ARGUMENT);
    MESSAGE_HAS("not valid UTF-8");
    EXPECT(shmbus_bus_open("no/slash", 0, &bus), SHMBUS_STATUS_INVALID_NAME);
    EXPECT(shmbus_bus_open(".hidden", 0, &bus), SHMBUS_STATUS_INVALID_NAME);
    EXPECT(shmbus_bus_open(uname("missing"), 0, &bus), SHMBUS_STATUS_NOT_FOUND);
    MESSAGE_HAS(uname("missing"));
    EXPECT(shmbus_bus_open(uname("missing"), 1u << 20, &bus), SHMBUS_STATUS_INVALID_ARGUMENT);
    MESSAGE_HAS("unknown flags");
    EXPECT(shmbus_bus_create(uname("flags"), 8, 64, SHMBUS_READ_ONLY, 0, &bus),
           SHMBUS_STATUS_INVALID_ARGUMENT);
    EXPECT(shmbus_bus_create(uname("mode"), 8, 64, 0, 01000, &bus), SHMBUS_STATUS_INVALID_ARGUMENT);
    EXPECT(shmbus_bus_create(uname("slots"), 3, 64, 0, 0, &bus), SHMBUS_STATUS_INVALID_CONFIG);
    EXPECT(shmbus_remove(NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_remove(uname("missing")), SHMBUS_STATUS_NOT_FOUND);
    EXPECT(shmbus_remove("bad name"), SHMBUS_STATUS_INVALID_NAME);
    /* Every handle argument is checked. */
    ShmbusReceived r;
    ShmbusValue v;
    uint64_t seq;
    size_t n;
    int fd;
    EXPECT(shmbus_bus_info(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_bus_publisher(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_bus_subscribe(NULL, 0, 0, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_publisher_publish(NULL, NULL, 0, &seq), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_publisher_publish_with(NULL, NULL, NULL, &seq), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_slot_writer_write(NULL, 0, NULL, 0), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_slot_writer_capacity(NULL, &n), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_subscriber_try_recv(NULL, &r), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_subscriber_recv_timeout(NULL, 0, &r), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_subscriber_stats(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_subscriber_fd(NULL, &fd), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_queue_create(NULL, 0, 0, 0, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_queue_open(NULL, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_queue_info(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_queue_sender(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_queue_receiver(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_queue_try_send(NULL, NULL, 0), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_queue_send(NULL, NULL, 0), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_queue_send_timeout(NULL, NULL, 0, 0), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_queue_try_recv(NULL, &r), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_queue_recv(NULL, &r), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_queue_recv_timeout(NULL, 0, &r), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_records_create(NULL, 0, 0, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_records_open(NULL, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_records_info(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_records_publisher(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_records_subscribe(NULL, 0, 0, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_record_publish(NULL, 0, NULL, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_record_try_recv(NULL, &r), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_record_recv_timeout(NULL, 0, &r), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_create(NULL, 1, 8, NULL, 0, 0, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_open(NULL, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_info(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_index_of(NULL, "k", &n), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_writer(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_reader(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_set(NULL, 0, NULL, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_set_key(NULL, "k", NULL, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_get(NULL, 0, &v), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_get_key(NULL, "k", &v), SHMBUS_STATUS_NULL_ARGUMENT);
    ShmbusLaneReceived lr;
    bool queued;
    uint32_t lane;
    EXPECT(shmbus_lanes_create(NULL, 0, 0, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lanes_open(NULL, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lanes_info(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lanes_acquire(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lanes_consumer(NULL, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lane_publisher_publish(NULL, NULL, 0, &queued), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lane_publisher_publish_wait(NULL, NULL, 0), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lane_publisher_publish_timeout(NULL, NULL, 0, 0, &queued), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lane_publisher_lane(NULL, &lane), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lane_publisher_dropped(NULL, &seq), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lane_consumer_try_recv(NULL, &lr), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lane_consumer_recv_timeout(NULL, 0, &lr), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lane_consumer_ack(NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lane_consumer_fd(NULL, &fd), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_list(false, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_list_len(NULL, &n), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_list_get(NULL, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    /* Every _free takes NULL. */
    shmbus_bus_free(NULL);
    shmbus_publisher_free(NULL);
    shmbus_subscriber_free(NULL);
    shmbus_queue_free(NULL);
    shmbus_queue_sender_free(NULL);
    shmbus_queue_receiver_free(NULL);
    shmbus_records_free(NULL);
    shmbus_record_publisher_free(NULL);
    shmbus_record_subscriber_free(NULL);
    shmbus_board_free(NULL);
    shmbus_board_writer_free(NULL);
    shmbus_board_reader_free(NULL);
    shmbus_lanes_free(NULL);
    shmbus_lane_publisher_close(NULL);
    shmbus_lane_consumer_free(NULL);
    shmbus_list_free(NULL);
}

static void *other_thread(void *arg) {
    (void)arg;
    /* The message is per thread: this one has not failed yet. */
    int fresh = strcmp(shmbus_last_error_message(), "") == 0;
    ShmbusBus *bus;
    int failed = shmbus_bus_open(uname("thread-missing"), 0, &bus) == SHMBUS_STATUS_NOT_FOUND &&
                 strstr(shmbus_last_error_message(), "thread-missing") != NULL;
    return (void *)(intptr_t)(fresh && failed);
}

static void test_error_message_is_per_thread(void) {
    ShmbusBus *bus;
    EXPECT(shmbus_bus_open(uname("main-missing"), 0, &bus), SHMBUS_STATUS_NOT_FOUND);
    pthread_t t;
    void *ret = NULL;
    CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0);
    CHECK(pthread_join(t, &ret) == 0);
    CHECK(ret == (void *)1);
    MESSAGE_HAS("main-missing");
}

/* Receives with try_recv and checks message `seq` of the pattern. */
static void expect_pattern(ShmbusSubscriber *sub, uint64_t seq) {
    ShmbusReceived r;
    OK(shmbus_subscriber_try_recv(sub, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE);
    CHECK(r.seq == seq);
    CHECK(is_pattern(seq, r.data, r.len));
}

#define expect_event(sub, event) expect_event_at(sub, event, __LINE__)
static void expect_event_at(ShmbusSubscriber *sub, ShmbusEvent event, int line) {
    ShmbusReceived r;
    OK(shmbus_subscriber_try_recv(sub, &r));
    CHECK(r.event == event);
    CHECK(r.data == NULL && r.len == 0);
    if (r.event != event)
        fprintf(stderr, "  (line %d: event %d, seq %" PRIu64 ", lost %" PRIu64 ")\n", line,
                (int)r.event, r.seq, r.lost);
}

static void publish_pattern(ShmbusPublisher *p, uint64_t i) {
    uint8_t m[PATTERN_MAX];
    uint64_t seq = UINT64_MAX;
    OK(shmbus_publisher_publish(p, m, pattern(i, m), &seq));
    CHECK(seq == i);
}

struct fill_ctx {
    ShmbusStatus capacity_status, write_status, too_far_status;
    size_t capacity;
    int calls;
};

static void fill(void *ctx, ShmbusSlotWriter *w) {
    struct fill_ctx *c = ctx;
    c->calls++;
    c->capacity_status = shmbus_slot_writer_capacity(w, &c->capacity);
    c->too_far_status = shmbus_slot_writer_write(w, c->capacity - 1, (const uint8_t *)"ab", 2);
    /* "xy", a gap of two zero bytes, then "abcd". */
    c->write_status = shmbus_slot_writer_write(w, 4, (const uint8_t *)"abcd", 4);
    if (c->write_status == SHMBUS_STATUS_OK)
        c->write_status = shmbus_slot_writer_write(w, 0, (const uint8_t *)"xy", 2);
}

static void test_bus(void) {
    const char *name = uname("bus");
    ShmbusBus *bus = NULL, *again = NULL, *ro = NULL;
    MUST(shmbus_bus_create(name, 8, 128, 0, 0640, &bus));
    EXPECT(shmbus_bus_create(name, 8, 128, 0, 0, &again), SHMBUS_STATUS_ALREADY_EXISTS);
    MESSAGE_HAS("already exists");
    struct stat st;
    char path[160];
    snprintf(path, sizeof path, "/dev/shm/shmbus.%s", name);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);

    ShmbusBusInfo info;
    OK(shmbus_bus_info(bus, &info));
    CHECK(info.slots == 8 && info.capacity == 128 && info.type_size == 0);
    CHECK(strcmp(info.type_name, "bytes") == 0);
    CHECK(info.cursor == 0 && !info.multi_producer && !info.read_only && !info.has_producers);
    CHECK(info.stall_bound_ns == 0);
    EXPECT(shmbus_bus_info(bus, NULL), SHMBUS_STATUS_NULL_ARGUMENT);

    ShmbusSubscriber *oldest = NULL, *sub = NULL;
    EXPECT(shmbus_bus_subscribe(bus, 7, 0, 0, &sub), SHMBUS_STATUS_INVALID_ARGUMENT);
    MESSAGE_HAS("start 7");
    EXPECT(shmbus_bus_subscribe(bus, SHMBUS_START_NEXT, 0, 2, &sub), SHMBUS_STATUS_INVALID_ARGUMENT);
    MESSAGE_HAS("lap policy 2");
    EXPECT(shmbus_bus_subscribe(bus, SHMBUS_START_NEXT, 0, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    MUST(shmbus_bus_subscribe(bus, SHMBUS_START_OLDEST, 0, SHMBUS_LAP_POLICY_OLDEST, &oldest));
    /* No producer yet and nothing published: closed, not final (a waiting receive looks at
     * the producers at once; try_recv only every so many empty polls). */
    ShmbusReceived r;
    OK(shmbus_subscriber_recv_timeout(oldest, 20000000000ull, &r));
    CHECK(r.event == SHMBUS_EVENT_CLOSED);

    ShmbusPublisher *p = NULL, *p2 = NULL;
    MUST(shmbus_bus_publisher(bus, &p));
    EXPECT(shmbus_bus_publisher(bus, &p2), SHMBUS_STATUS_PRODUCER_EXISTS);
    EXPECT(shmbus_bus_publisher(bus, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    OK(shmbus_bus_info(bus, &info));
    CHECK(info.has_producers);

    for (uint64_t i = 0; i < 4; i++) publish_pattern(p, i);
    for (uint64_t i = 0; i < 4; i++) expect_pattern(oldest, i);
    expect_event(oldest, SHMBUS_EVENT_EMPTY);
    OK(shmbus_bus_info(bus, &info));
    CHECK(info.cursor == 4);

    /* Lengths: too large, NULL with a length, an empty message (NULL data, length 0). */
    uint8_t big[129] = {0};
    uint64_t seq = 77;
    EXPECT(shmbus_publisher_publish(p, big, 129, &seq), SHMBUS_STATUS_MESSAGE_TOO_LARGE);
    MESSAGE_HAS("129 bytes, at most 128");
    CHECK(seq == 77);
    EXPECT(shmbus_publisher_publish(p, NULL, 5, &seq), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_publisher_publish(p, big, SIZE_MAX, &seq), SHMBUS_STATUS_INVALID_ARGUMENT);
    OK(shmbus_publisher_publish(p, NULL, 0, NULL));
    OK(shmbus_subscriber_try_recv(oldest, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.seq == 4 && r.len == 0 && r.data != NULL);
    EXPECT(shmbus_subscriber_try_recv(oldest, NULL), SHMBUS_STATUS_NULL_ARGUMENT);

    /* In place: the fill function's writes, the gap zeroed, the capacity. */
    struct fill_ctx c = {0};
    EXPECT(shmbus_publisher_publish_with(p, NULL, &c, &seq), SHMBUS_STATUS_NULL_ARGUMENT);
    MESSAGE_HAS("`fill` is NULL");
    OK(shmbus_publisher_publish_with(p, fill, &c, &seq));
    CHECK(c.calls == 1 && seq == 5);
    CHECK(c.capacity_status == SHMBUS_STATUS_OK && c.capacity == 128);
    CHECK(c.too_far_status == SHMBUS_STATUS_MESSAGE_TOO_LARGE);
    CHECK(c.write_status == SHMBUS_STATUS_OK);
    OK(shmbus_subscriber_try_recv(oldest, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.seq == 5 && r.len == 8);
    CHECK(r.len == 8 && memcmp(r.data, "xy\0\0abcd", 8) == 0);

    /* Start positions. */
    ShmbusSubscriber *last2 = NULL, *at3 = NULL, *next = NULL;
    MUST(shmbus_bus_subscribe(bus, SHMBUS_START_LAST, 2, 0, &last2));
    MUST(shmbus_bus_subscribe(bus, SHMBUS_START_SEQUENCE, 3, 0, &at3));
    MUST(shmbus_bus_subscribe(bus, SHMBUS_START_NEXT, 0, 0, &next));
    OK(shmbus_subscriber_try_recv(last2, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.seq == 4);
    expect_pattern(at3, 3);
    expect_event(next, SHMBUS_EVENT_EMPTY);

    /* A lap: the exact loss, where the subscriber resumes, the counters. */
    ShmbusSubscriber *newest = NULL;
    MUST(shmbus_bus_subscribe(bus, SHMBUS_START_NEXT, 0, SHMBUS_LAP_POLICY_NEWEST, &newest));
    for (uint64_t i = 6; i < 26; i++) publish_pattern(p, i);
    /* 20 published into 8 slots: 6..17 overwritten, 18..25 intact. */
    OK(shmbus_subscriber_try_recv(next, &r));
    CHECK(r.event == SHMBUS_EVENT_LAPPED && r.lost == 12 && r.seq == 18);
    for (uint64_t i = 18; i < 26; i++) expect_pattern(next, i);
    expect_event(next, SHMBUS_EVENT_EMPTY);
    ShmbusSubscriberStats stats;
    OK(shmbus_subscriber_stats(next, &stats));
    CHECK(stats.received == 8 && stats.lost == 12 && stats.laps == 1 && stats.next_seq == 26);
    EXPECT(shmbus_subscriber_stats(next, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    /* Lap policy NEWEST: resumes at the newest, 25, having lost 6..24. */
    OK(shmbus_subscriber_try_recv(newest, &r));
    CHECK(r.event == SHMBUS_EVENT_LAPPED && r.lost == 19 && r.seq == 25);
    expect_pattern(newest, 25);

    /* A receive that waits: nothing comes within 1 ms; then one that finds a message. */
    OK(shmbus_subscriber_recv_timeout(next, 1000000, &r));
    CHECK(r.event == SHMBUS_EVENT_EMPTY);
    EXPECT(shmbus_subscriber_recv_timeout(next, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    publish_pattern(p, 26);
    OK(shmbus_subscriber_recv_timeout(next, UINT64_MAX, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.seq == 26 && is_pattern(26, r.data, r.len));

    /* The readiness descriptor: the same one each time, readable once a message is there,
     * receives through it re-arm it; a waiting receive then polls it. */
    int fd = -1, fd2 = -2;
    EXPECT(shmbus_subscriber_fd(next, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    OK(shmbus_subscriber_fd(next, &fd));
    OK(shmbus_subscriber_fd(next, &fd2));
    CHECK(fd >= 0 && fd == fd2);
    expect_event(next, SHMBUS_EVENT_EMPTY);
    publish_pattern(p, 27);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    CHECK(poll(&pfd, 1, 20000) == 1 && (pfd.revents & POLLIN));
    expect_pattern(next, 27);
    expect_event(next, SHMBUS_EVENT_EMPTY);
    OK(shmbus_subscriber_recv_timeout(next, 1000000, &r));
    CHECK(r.event == SHMBUS_EVENT_EMPTY);
    publish_pattern(p, 28);
    OK(shmbus_subscriber_recv_timeout(next, 20000000000ull, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.seq == 28 && is_pattern(28, r.data, r.len));
    OK(shmbus_subscriber_stats(next, &stats));
    CHECK(stats.next_seq == 29);

    /* Read-only: subscribers only. */
    MUST(shmbus_bus_open(name, SHMBUS_READ_ONLY, &ro));
    OK(shmbus_bus_info(ro, &info));
    CHECK(info.read_only && info.cursor == 29);
    EXPECT(shmbus_bus_publisher(ro, &p2), SHMBUS_STATUS_READ_ONLY);
    MESSAGE_HAS("read-only");
    ShmbusSubscriber *ro_sub = NULL;
    MUST(shmbus_bus_subscribe(ro, SHMBUS_START_LAST, 1, 0, &ro_sub));
    expect_pattern(ro_sub, 28);
    shmbus_bus_free(ro);
    /* Handles outlive the bus handle they came from. */
    publish_pattern(p, 29);
    expect_pattern(ro_sub, 29);

    /* The producer gone and everything read: closed. */
    shmbus_publisher_free(p);
    expect_pattern(next, 29);
    OK(shmbus_subscriber_recv_timeout(next, 20000000000ull, &r));
    CHECK(r.event == SHMBUS_EVENT_CLOSED);
    OK(shmbus_subscriber_recv_timeout(ro_sub, 1000000000, &r));
    CHECK(r.event == SHMBUS_EVENT_CLOSED);

    /* Opened as another kind. */
    ShmbusQueue *q = NULL;
    EXPECT(shmbus_queue_open(name, 0, &q), SHMBUS_STATUS_WRONG_KIND);
    MESSAGE_HAS("not a queue");

    shmbus_subscriber_free(oldest);
    shmbus_subscriber_free(last2);
    shmbus_subscriber_free(at3);
    shmbus_subscriber_free(next);
    shmbus_subscriber_free(newest);
    shmbus_subscriber_free(ro_sub);
    shmbus_bus_free(bus);
    OK(shmbus_remove(name));
    EXPECT(shmbus_bus_open(name, 0, &bus), SHMBUS_STATUS_NOT_FOUND);
}

static void test_multi_producer_bus(void) {
    const char *name = uname("multi");
    ShmbusBus *bus = NULL;
    EXPECT(shmbus_bus_create(name, 0, 0, SHMBUS_NO_STALL_BOUND, 0, &bus),
           SHMBUS_STATUS_INVALID_ARGUMENT);
    MUST(shmbus_bus_create(name, 0, 0, SHMBUS_MULTI_PRODUCER, 0, &bus));
    ShmbusBusInfo info;
    OK(shmbus_bus_info(bus, &info));
    CHECK(info.multi_producer && info.slots == 1024 && info.capacity == 240);
    CHECK(info.stall_bound_ns == 1000000000ull);
    ShmbusPublisher *a = NULL, *b = NULL;
    ShmbusSubscriber *sub = NULL;
    MUST(shmbus_bus_subscribe(bus, SHMBUS_START_NEXT, 0, 0, &sub));
    MUST(shmbus_bus_publisher(bus, &a));
    OK(shmbus_bus_publisher(bus, &b));
    publish_pattern(a, 0);
    publish_pattern(b, 1);
    expect_pattern(sub, 0);
    expect_pattern(sub, 1);
    shmbus_publisher_free(a);
    shmbus_publisher_free(b);
    shmbus_subscriber_free(sub);
    shmbus_bus_free(bus);
    OK(shmbus_remove(name));
}

static void test_queue(void) {
    const char *name = uname("queue");
    ShmbusQueue *q = NULL, *ro = NULL;
    EXPECT(shmbus_queue_create(name, 3, 32, 0, 0, &q), SHMBUS_STATUS_INVALID_CONFIG);
    EXPECT(shmbus_queue_create(name, 4, 32, SHMBUS_MULTI_PRODUCER, 0, &q),
           SHMBUS_STATUS_INVALID_ARGUMENT);
    MUST(shmbus_queue_create(name, 4, 32, 0, 0, &q));
    ShmbusQueueInfo info;
    OK(shmbus_queue_info(q, &info));
    CHECK(info.capacity == 4 && info.item_size == 32 && info.type_size == 0 && info.len == 0);
    CHECK(info.closed && !info.read_only);
    CHECK(info.stall_bound_ns == 1000000000ull);
    {
        /* Without a stall bound: waited for as long as a stopped participant lives. */
        const char *unbounded = uname("queue-unbounded");
        ShmbusQueue *u = NULL;
        MUST(shmbus_queue_create(unbounded, 4, 32, SHMBUS_NO_STALL_BOUND, 0, &u));
        ShmbusQueueInfo ui;
        OK(shmbus_queue_info(u, &ui));
        CHECK(ui.stall_bound_ns == 0);
        shmbus_queue_free(u);
        OK(shmbus_remove(unbounded));
    }

    ShmbusQueueSender *tx = NULL;
    ShmbusQueueReceiver *rx = NULL;
    MUST(shmbus_queue_sender(q, &tx));
    MUST(shmbus_queue_receiver(q, &rx));
    ShmbusReceived r;
    OK(shmbus_queue_try_recv(rx, &r));
    CHECK(r.event == SHMBUS_EVENT_EMPTY);
    EXPECT(shmbus_queue_try_recv(rx, NULL), SHMBUS_STATUS_NULL_ARGUMENT);

    char item[16];
    for (int i = 0; i < 4; i++) {
        snprintf(item, sizeof item, "job %d", i);
        OK(shmbus_queue_try_send(tx, (const uint8_t *)item, strlen(item)));
    }
    OK(shmbus_queue_info(q, &info));
    CHECK(info.len == 4 && !info.closed);
    EXPECT(shmbus_queue_try_send(tx, (const uint8_t *)"x", 1), SHMBUS_STATUS_FULL);
    MESSAGE_HAS("full");
    EXPECT(shmbus_queue_send_timeout(tx, (const uint8_t *)"x", 1, 1000000), SHMBUS_STATUS_FULL);
    uint8_t big[33] = {0};
    EXPECT(shmbus_queue_try_send(tx, big, 33), SHMBUS_STATUS_MESSAGE_TOO_LARGE);
    MESSAGE_HAS("33 bytes, at most 32");
    EXPECT(shmbus_queue_try_send(tx, NULL, 1), SHMBUS_STATUS_NULL_ARGUMENT);

    /* In order, each once, by each of the three receives. */
    OK(shmbus_queue_try_recv(rx, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.len == 5 && memcmp(r.data, "job 0", 5) == 0);
    OK(shmbus_queue_recv_timeout(rx, 1000000000, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.len == 5 && memcmp(r.data, "job 1", 5) == 0);
    OK(shmbus_queue_recv(rx, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.len == 5 && memcmp(r.data, "job 2", 5) == 0);
    /* Room again: a blocking send and one with a timeout. */
    OK(shmbus_queue_send(tx, (const uint8_t *)"job 4", 5));
    OK(shmbus_queue_send_timeout(tx, NULL, 0, 1000000));
    OK(shmbus_queue_try_recv(rx, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.len == 5 && memcmp(r.data, "job 3", 5) == 0);
    OK(shmbus_queue_try_recv(rx, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.len == 5 && memcmp(r.data, "job 4", 5) == 0);
    OK(shmbus_queue_try_recv(rx, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.len == 0 && r.data != NULL);
    OK(shmbus_queue_recv_timeout(rx, 1000000, &r));
    CHECK(r.event == SHMBUS_EVENT_EMPTY);

    /* The readiness descriptor: the same one each time, readable once an item is there; the
     * receives that wait then poll it. */
    int fd = -1, fd2 = -2;
    EXPECT(shmbus_queue_receiver_fd(NULL, &fd), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_queue_receiver_fd(rx, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    OK(shmbus_queue_receiver_fd(rx, &fd));
    OK(shmbus_queue_receiver_fd(rx, &fd2));
    CHECK(fd >= 0 && fd == fd2);
    OK(shmbus_queue_try_recv(rx, &r));
    CHECK(r.event == SHMBUS_EVENT_EMPTY);
    OK(shmbus_queue_try_send(tx, (const uint8_t *)"job 5", 5));
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    CHECK(poll(&pfd, 1, 20000) == 1 && (pfd.revents & POLLIN));
    OK(shmbus_queue_try_recv(rx, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.len == 5 && memcmp(r.data, "job 5", 5) == 0);
    OK(shmbus_queue_recv_timeout(rx, 1000000, &r));
    CHECK(r.event == SHMBUS_EVENT_EMPTY);
    OK(shmbus_queue_try_send(tx, (const uint8_t *)"job 6", 5));
    OK(shmbus_queue_recv(rx, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.len == 5 && memcmp(r.data, "job 6", 5) == 0);
    OK(shmbus_queue_try_send(tx, (const uint8_t *)"job 7", 5));
    OK(shmbus_queue_recv_timeout(rx, 20000000000ull, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.len == 5 && memcmp(r.data, "job 7", 5) == 0);

    /* Read-only: look only. */
    MUST(shmbus_queue_open(name, SHMBUS_READ_ONLY, &ro));
    ShmbusQueueSender *tx2 = NULL;
    ShmbusQueueReceiver *rx2 = NULL;
    EXPECT(shmbus_queue_sender(ro, &tx2), SHMBUS_STATUS_READ_ONLY);
    EXPECT(shmbus_queue_receiver(ro, &rx2), SHMBUS_STATUS_READ_ONLY);
    OK(shmbus_queue_info(ro, &info));
    CHECK(info.read_only);
    shmbus_queue_free(ro);

    /* The sender gone and nothing left: closed, for every receive (through the descriptor). */
    shmbus_queue_sender_free(tx);
    OK(shmbus_queue_try_recv(rx, &r));
    CHECK(r.event == SHMBUS_EVENT_CLOSED);
    OK(shmbus_queue_recv_timeout(rx, 1000000000, &r));
    CHECK(r.event == SHMBUS_EVENT_CLOSED);
    OK(shmbus_queue_recv(rx, &r));
    CHECK(r.event == SHMBUS_EVENT_CLOSED);

    ShmbusBus *bus = NULL;
    EXPECT(shmbus_bus_open(name, 0, &bus), SHMBUS_STATUS_WRONG_KIND);
    shmbus_queue_receiver_free(rx);
    shmbus_queue_free(q);
    OK(shmbus_remove(name));
}

static void test_records(void) {
    const char *name = uname("records");
    ShmbusRecords *rec = NULL, *ro = NULL;
    EXPECT(shmbus_records_create(name, 1000, 0, 0, &rec), SHMBUS_STATUS_INVALID_CONFIG);
    MUST(shmbus_records_create(name, 4096, 0, 0, &rec));
    ShmbusRecordsInfo info;
    OK(shmbus_records_info(rec, &info));
    CHECK(info.ring_bytes == 4096 && info.max_record == 1024 - 16);
    CHECK(info.records_published == 0 && !info.has_producers && !info.read_only);

    ShmbusRecordSubscriber *sub = NULL, *next = NULL;
    EXPECT(shmbus_records_subscribe(rec, 9, 0, 0, &sub), SHMBUS_STATUS_INVALID_ARGUMENT);
    MUST(shmbus_records_subscribe(rec, SHMBUS_START_OLDEST, 0, SHMBUS_LAP_POLICY_OLDEST, &sub));
    ShmbusRecordPublisher *p = NULL, *p2 = NULL;
    MUST(shmbus_records_publisher(rec, &p));
    EXPECT(shmbus_records_publisher(rec, &p2), SHMBUS_STATUS_PRODUCER_EXISTS);
    uint64_t seq = 99;
    OK(shmbus_record_publish(p, 7, (const uint8_t *)"first", 5, &seq));
    CHECK(seq == 0);
    uint8_t big[1009] = {0};
    EXPECT(shmbus_record_publish(p, 1, big, 1009, &seq), SHMBUS_STATUS_MESSAGE_TOO_LARGE);
    OK(shmbus_record_publish(p, 8, big, 1008, NULL));
    ShmbusReceived r;
    OK(shmbus_record_try_recv(sub, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.seq == 0 && r.type_id == 7);
    CHECK(r.len == 5 && memcmp(r.data, "first", 5) == 0);
    OK(shmbus_record_recv_timeout(sub, 1000000000, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.seq == 1 && r.type_id == 8 && r.len == 1008);
    OK(shmbus_record_try_recv(sub, &r));
    CHECK(r.event == SHMBUS_EVENT_EMPTY);
    OK(shmbus_record_recv_timeout(sub, 1000000, &r));
    CHECK(r.event == SHMBUS_EVENT_EMPTY);
    EXPECT(shmbus_record_try_recv(sub, NULL), SHMBUS_STATUS_NULL_ARGUMENT);

    /* A lap: every record is either received (and intact) or counted lost, exactly. */
    MUST(shmbus_records_subscribe(rec, SHMBUS_START_NEXT, 0, 0, &next));
    uint8_t m[PATTERN_MAX];
    for (uint64_t i = 0; i < 100; i++) OK(shmbus_record_publish(p, (uint32_t)i, m, pattern(i, m), NULL));
    uint64_t received = 0, lost = 0, laps = 0;
    for (;;) {
        OK(shmbus_record_try_recv(next, &r));
        if (r.event == SHMBUS_EVENT_LAPPED) {
            laps++;
            lost += r.lost;
        } else if (r.event == SHMBUS_EVENT_MESSAGE) {
            CHECK(r.type_id == r.seq - 2 && is_pattern(r.seq - 2, r.data, r.len));
            received++;
        } else {
            break;
        }
    }
    CHECK(r.event == SHMBUS_EVENT_EMPTY);
    CHECK(laps == 1 && received > 0 && received + lost == 100);

    /* The readiness descriptor: the same one each time, readable once a record is there;
     * a waiting receive then polls it. */
    int fd = -1, fd2 = -2;
    EXPECT(shmbus_record_subscriber_fd(NULL, &fd), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_record_subscriber_fd(next, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    OK(shmbus_record_subscriber_fd(next, &fd));
    OK(shmbus_record_subscriber_fd(next, &fd2));
    CHECK(fd >= 0 && fd == fd2);
    OK(shmbus_record_try_recv(next, &r));
    CHECK(r.event == SHMBUS_EVENT_EMPTY);
    OK(shmbus_record_publish(p, 100, (const uint8_t *)"ready", 5, &seq));
    CHECK(seq == 102);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    CHECK(poll(&pfd, 1, 20000) == 1 && (pfd.revents & POLLIN));
    OK(shmbus_record_try_recv(next, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.seq == 102 && r.type_id == 100 && r.len == 5);
    OK(shmbus_record_recv_timeout(next, 1000000, &r));
    CHECK(r.event == SHMBUS_EVENT_EMPTY);
    OK(shmbus_record_publish(p, 101, (const uint8_t *)"again", 5, NULL));
    OK(shmbus_record_recv_timeout(next, 20000000000ull, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.seq == 103 && r.len == 5 && memcmp(r.data, "again", 5) == 0);

    MUST(shmbus_records_open(name, SHMBUS_READ_ONLY, &ro));
    OK(shmbus_records_info(ro, &info));
    CHECK(info.read_only && info.has_producers && info.records_published == 104);
    EXPECT(shmbus_records_publisher(ro, &p2), SHMBUS_STATUS_READ_ONLY);
    shmbus_records_free(ro);

    shmbus_record_publisher_free(p);
    OK(shmbus_record_recv_timeout(next, 20000000000ull, &r));
    CHECK(r.event == SHMBUS_EVENT_CLOSED);
    shmbus_record_subscriber_free(sub);
    shmbus_record_subscriber_free(next);
    shmbus_records_free(rec);
    OK(shmbus_remove(name));
}

static void test_board(void) {
    const char *name = uname("board");
    ShmbusBoard *board = NULL, *ro = NULL;
    const char *keys[] = {"hip", "knee"};
    const char *null_key[] = {"hip", NULL};
    const char *twice[] = {"hip", "hip"};
    EXPECT(shmbus_board_create(name, 3, 16, NULL, 2, 0, 0, &board), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_create(name, 3, 16, null_key, 2, 0, 0, &board), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_create(name, 3, 16, twice, 2, 0, 0, &board), SHMBUS_STATUS_INVALID_CONFIG);
    EXPECT(shmbus_board_create(name, 0, 16, NULL, 0, 0, 0, &board), SHMBUS_STATUS_INVALID_CONFIG);
    MUST(shmbus_board_create(name, 3, 16, keys, 2, 0, 0, &board));
    ShmbusBoardInfo info;
    OK(shmbus_board_info(board, &info));
    CHECK(info.cells == 3 && info.value_size == 16 && info.type_size == 0 && info.has_keys);
    CHECK(!info.has_writers && !info.read_only);

    size_t index = 99;
    OK(shmbus_board_index_of(board, "knee", &index));
    CHECK(index == 1);
    EXPECT(shmbus_board_index_of(board, "elbow", &index), SHMBUS_STATUS_KEY_NOT_FOUND);
    MESSAGE_HAS("\"elbow\"");
    EXPECT(shmbus_board_index_of(board, NULL, &index), SHMBUS_STATUS_NULL_ARGUMENT);

    ShmbusBoardWriter *w = NULL;
    ShmbusBoardReader *rd = NULL;
    MUST(shmbus_board_writer(board, &w));
    MUST(shmbus_board_reader(board, &rd));
    OK(shmbus_board_info(board, &info));
    CHECK(info.has_writers);
    ShmbusValue v;
    OK(shmbus_board_get(rd, 0, &v));
    CHECK(!v.found && v.version == 0 && v.data == NULL && v.len == 0);

    uint64_t version = 0;
    OK(shmbus_board_set(w, 0, (const uint8_t *)"abc", 3, &version));
    CHECK(version == 1);
    OK(shmbus_board_set_key(w, "knee", (const uint8_t *)"0.25", 4, &version));
    CHECK(version == 1);
    OK(shmbus_board_set_key(w, "knee", (const uint8_t *)"0.5", 3, NULL));
    OK(shmbus_board_get(rd, 0, &v));
    CHECK(v.found && v.version == 1 && v.len == 3 && memcmp(v.data, "abc", 3) == 0);
    CHECK(v.stamp_ns > 0);
    OK(shmbus_board_get_key(rd, "knee", &v));
    CHECK(v.found && v.version == 2 && v.len == 3 && memcmp(v.data, "0.5", 3) == 0);
    EXPECT(shmbus_board_get_key(rd, "elbow", &v), SHMBUS_STATUS_KEY_NOT_FOUND);
    EXPECT(shmbus_board_set_key(w, "elbow", NULL, 0, NULL), SHMBUS_STATUS_KEY_NOT_FOUND);

    uint8_t big[17] = {0};
    EXPECT(shmbus_board_set(w, 3, big, 1, NULL), SHMBUS_STATUS_CELL_OUT_OF_RANGE);
    MESSAGE_HAS("no cell 3");
    EXPECT(shmbus_board_set(w, 2, big, 17, NULL), SHMBUS_STATUS_VALUE_TOO_LARGE);
    MESSAGE_HAS("17 bytes");
    EXPECT(shmbus_board_set(w, 2, NULL, 1, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_board_get(rd, 3, &v), SHMBUS_STATUS_CELL_OUT_OF_RANGE);
    EXPECT(shmbus_board_get(rd, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);

    MUST(shmbus_board_open(name, SHMBUS_READ_ONLY, &ro));
    ShmbusBoardWriter *w2 = NULL;
    EXPECT(shmbus_board_writer(ro, &w2), SHMBUS_STATUS_READ_ONLY);
    ShmbusBoardReader *rd2 = NULL;
    MUST(shmbus_board_reader(ro, &rd2));
    shmbus_board_free(ro);
    OK(shmbus_board_get(rd2, 0, &v));
    CHECK(v.found && v.len == 3 && memcmp(v.data, "abc", 3) == 0);

    shmbus_board_reader_free(rd2);
    shmbus_board_reader_free(rd);
    shmbus_board_writer_free(w);
    shmbus_board_free(board);
    OK(shmbus_remove(name));
}

static void test_list(void) {
    const char *name = uname("listed");
    const char *junk = uname("junk");
    ShmbusQueue *q = NULL;
    MUST(shmbus_queue_create(name, 0, 0, 0, 0, &q));
    /* A file named like a segment that is none. */
    char path[160];
    snprintf(path, sizeof path, "/dev/shm/shmbus.%s", junk);
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
    CHECK(fd >= 0);
    char x[4096];
    memset(x, 'x', sizeof x);
    CHECK(write(fd, x, sizeof x) == (ssize_t)sizeof x);
    close(fd);
    ShmbusBus *bus = NULL;
    EXPECT(shmbus_bus_open(junk, 0, &bus), SHMBUS_STATUS_BAD_MAGIC);
    MESSAGE_HAS("not a shmbus segment");

    ShmbusList *list = NULL;
    MUST(shmbus_list(false, &list));
    size_t len = 0;
    OK(shmbus_list_len(list, &len));
    EXPECT(shmbus_list_len(list, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    int seen_queue = 0, seen_junk = 0;
    for (size_t i = 0; i < len; i++) {
        ShmbusListEntry e;
        OK(shmbus_list_get(list, i, &e));
        CHECK(e.file_name != NULL && strncmp(e.file_name, "shmbus.", 7) == 0);
        if (e.name && strcmp(e.name, name) == 0) {
            seen_queue++;
            CHECK(e.kind == SHMBUS_KIND_QUEUE && e.status == SHMBUS_STATUS_OK && e.error == NULL);
            CHECK(e.creator_pid == (uint32_t)getpid() && e.creator_alive);
            CHECK(e.mode == 0600 && e.uid == (uint32_t)getuid() && e.size > 0);
        }
        if (e.name && strcmp(e.name, junk) == 0) {
            seen_junk++;
            CHECK(e.kind == SHMBUS_KIND_UNKNOWN && e.status == SHMBUS_STATUS_BAD_MAGIC);
            CHECK(e.error != NULL && strstr(e.error, "not a shmbus segment") != NULL);
            CHECK(e.size == 4096);
        }
    }
    CHECK(seen_queue == 1 && seen_junk == 1);
    ShmbusListEntry e;
    EXPECT(shmbus_list_get(list, len, &e), SHMBUS_STATUS_INVALID_ARGUMENT);
    MESSAGE_HAS("entries");
    EXPECT(shmbus_list_get(list, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    shmbus_list_free(list);
    shmbus_queue_free(q);
    OK(shmbus_remove(name));
    OK(shmbus_remove(junk));
}

/* Receives the next event (waiting up to 20 s for one), and checks it is a record of `lane`
 * holding `len` bytes equal to `want` (NULL: any bytes). */
static void expect_lane_record_at(ShmbusLaneConsumer *c, uint32_t lane, const void *want,
                                  size_t len, int line) {
    ShmbusLaneReceived r;
    memset(&r, 0xee, sizeof r);
    ShmbusStatus s = shmbus_lane_consumer_recv_timeout(c, 20000000000ull, &r);
    if (s != SHMBUS_STATUS_OK || r.event != SHMBUS_LANE_EVENT_RECORD || r.lane != lane ||
        r.len != len || r.data == NULL || (want && memcmp(r.data, want, len) != 0)) {
        g_failed++;
        fprintf(stderr, "api.c:%d: expected a record of %zu bytes on lane %u, got %s event %d lane %u len %zu\n",
                line, len, lane, shmbus_status_name(s), (int)r.event, r.lane, r.len);
    } else {
        g_passed++;
    }
}
#define EXPECT_LANE_RECORD(c, lane, want, len) expect_lane_record_at(c, lane, want, len, __LINE__)

/* Receives the next event (waiting up to 20 s), and checks it is lane `lane` closing. */
static void expect_lane_closed_at(ShmbusLaneConsumer *c, uint32_t lane, uint64_t dropped,
                                  bool died, int line) {
    ShmbusLaneReceived r;
    memset(&r, 0xee, sizeof r);
    ShmbusStatus s = shmbus_lane_consumer_recv_timeout(c, 20000000000ull, &r);
    if (s != SHMBUS_STATUS_OK || r.event != SHMBUS_LANE_EVENT_CLOSED || r.lane != lane ||
        r.dropped != dropped || r.producer_died != died || r.data != NULL || r.len != 0) {
        g_failed++;
        fprintf(stderr, "api.c:%d: expected lane %u closed (dropped %" PRIu64 ", died %d), got %s event %d lane %u dropped %" PRIu64 " died %d\n",
                line, lane, dropped, (int)died, shmbus_status_name(s), (int)r.event, r.lane,
                r.dropped, (int)r.producer_died);
    } else {
        g_passed++;
    }
}
#define EXPECT_LANE_CLOSED(c, lane, dropped, died) expect_lane_closed_at(c, lane, dropped, died, __LINE__)

static void expect_lane_empty_at(ShmbusLaneConsumer *c, int line) {
    ShmbusLaneReceived r;
    memset(&r, 0xee, sizeof r);
    ShmbusStatus s = shmbus_lane_consumer_try_recv(c, &r);
    if (s != SHMBUS_STATUS_OK || r.event != SHMBUS_LANE_EVENT_EMPTY || r.data != NULL || r.len != 0) {
        g_failed++;
        fprintf(stderr, "api.c:%d: expected nothing, got %s event %d lane %u len %zu\n", line,
                shmbus_status_name(s), (int)r.event, r.lane, r.len);
    } else {
        g_passed++;
    }
}
#define EXPECT_LANE_EMPTY(c) expect_lane_empty_at(c, __LINE__)

static void test_lanes(void) {
    const char *name = uname("lanes");
    ShmbusLanes *l = NULL, *l2 = NULL, *ro = NULL;
    EXPECT(shmbus_lanes_create(NULL, 2, 4096, 0, &l), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lanes_create(name, 2, 4096, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lanes_create(name, 5000, 4096, 0, &l), SHMBUS_STATUS_INVALID_CONFIG);
    EXPECT(shmbus_lanes_create(name, 2, 1000, 0, &l), SHMBUS_STATUS_INVALID_CONFIG);
    EXPECT(shmbus_lanes_create(name, 2, 4096, 01000, &l), SHMBUS_STATUS_INVALID_ARGUMENT);
    CHECK(l == NULL);
    MUST(shmbus_lanes_create(name, 2, 4096, 0, &l));
    EXPECT(shmbus_lanes_create(name, 2, 4096, 0, &l2), SHMBUS_STATUS_ALREADY_EXISTS);
    ShmbusLanesInfo info;
    EXPECT(shmbus_lanes_info(l, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    OK(shmbus_lanes_info(l, &info));
    CHECK(info.lanes == 2 && info.lane_bytes == 4096 && info.max_record == 4080);
    CHECK(!info.has_consumer && !info.read_only);
    EXPECT(shmbus_lanes_open(name, 1u << 20, &l2), SHMBUS_STATUS_INVALID_ARGUMENT);
    MUST(shmbus_lanes_open(name, 0, &l2));

    /* One consumer at a time, from any handle. */
    ShmbusLaneConsumer *c = NULL, *c2 = NULL;
    EXPECT(shmbus_lanes_consumer(l, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    MUST(shmbus_lanes_consumer(l, &c));
    EXPECT(shmbus_lanes_consumer(l2, &c2), SHMBUS_STATUS_CONSUMER_EXISTS);
    MESSAGE_HAS(name);
    EXPECT(shmbus_lanes_consumer(l, &c2), SHMBUS_STATUS_CONSUMER_EXISTS);
    CHECK(c2 == NULL);
    OK(shmbus_lanes_info(l2, &info));
    CHECK(info.has_consumer);
    EXPECT_LANE_EMPTY(c);

    /* Two lanes: two producers, a third finds the pool full. */
    ShmbusLanePublisher *p1 = NULL, *p2 = NULL, *p3 = NULL;
    EXPECT(shmbus_lanes_acquire(l, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    MUST(shmbus_lanes_acquire(l, &p1));
    MUST(shmbus_lanes_acquire(l2, &p2));
    EXPECT(shmbus_lanes_acquire(l, &p3), SHMBUS_STATUS_LANES_FULL);
    CHECK(strcmp(shmbus_status_name(SHMBUS_STATUS_LANES_FULL), "SHMBUS_STATUS_LANES_FULL") == 0);
    CHECK(p3 == NULL);
    uint32_t lane1 = 99, lane2 = 99;
    EXPECT(shmbus_lane_publisher_lane(p1, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    OK(shmbus_lane_publisher_lane(p1, &lane1));
    OK(shmbus_lane_publisher_lane(p2, &lane2));
    CHECK(lane1 == 0 && lane2 == 1);

    /* Round-robin across lanes, in order within each; an empty record has a real pointer. */
    bool queued = false;
    OK(shmbus_lane_publisher_publish(p1, (const uint8_t *)"hello", 5, &queued));
    CHECK(queued);
    OK(shmbus_lane_publisher_publish(p1, (const uint8_t *)"world", 5, NULL));
    OK(shmbus_lane_publisher_publish(p2, NULL, 0, &queued));
    CHECK(queued);
    EXPECT(shmbus_lane_publisher_publish(p2, NULL, 3, &queued), SHMBUS_STATUS_NULL_ARGUMENT);
    static uint8_t big[4089];
    memset(big, 0x5a, sizeof big);
    EXPECT(shmbus_lane_publisher_publish(p2, big, 4089, &queued), SHMBUS_STATUS_MESSAGE_TOO_LARGE);
    MESSAGE_HAS("4089");
    EXPECT_LANE_RECORD(c, lane1, "hello", 5);
    EXPECT_LANE_RECORD(c, lane2, NULL, 0);
    EXPECT_LANE_RECORD(c, lane1, "world", 5);
    EXPECT_LANE_EMPTY(c);
    /* The largest record fills a whole lane. */
    OK(shmbus_lane_publisher_publish(p2, big, 4080, &queued));
    CHECK(queued);
    EXPECT_LANE_RECORD(c, lane2, big, 4080);
    OK(shmbus_lane_consumer_ack(c));
    OK(shmbus_lane_consumer_ack(c)); /* nothing held: no error */
    EXPECT(shmbus_lane_consumer_ack(NULL), SHMBUS_STATUS_NULL_ARGUMENT);

    /* In place: a record not yet acknowledged keeps its room in the lane, so a full lane stays
     * full until the acknowledgement; then the room is the producer's again. */
    uint8_t rec[1000];
    int n_queued = 0;
    for (int i = 0; i < 6; i++) {
        memset(rec, 'a' + i, sizeof rec);
        OK(shmbus_lane_publisher_publish(p1, rec, sizeof rec, &queued));
        n_queued += queued;
    }
    CHECK(n_queued == 4); /* 4 x (1000 + 8 header, 8-aligned) fit in 4096 */
    uint64_t dropped = 0;
    OK(shmbus_lane_publisher_dropped(p1, &dropped));
    CHECK(dropped == 2);
    EXPECT(shmbus_lane_publisher_dropped(p1, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    ShmbusLaneReceived r;
    OK(shmbus_lane_consumer_try_recv(c, &r));
    CHECK(r.event == SHMBUS_LANE_EVENT_RECORD && r.lane == lane1 && r.len == 1000 && r.data[0] == 'a' &&
          r.data[999] == 'a');
    const uint8_t *first = r.data;
    memset(rec, 'x', sizeof rec);
    OK(shmbus_lane_publisher_publish(p1, rec, sizeof rec, &queued));
    CHECK(!queued);
    CHECK(first[0] == 'a' && first[999] == 'a'); /* untouched while held */
    OK(shmbus_lane_consumer_ack(c));
    OK(shmbus_lane_publisher_publish(p1, rec, sizeof rec, &queued));
    CHECK(queued);
    OK(shmbus_lane_publisher_dropped(p1, &dropped));
    CHECK(dropped == 3);
    memset(rec, 'b', sizeof rec);
    EXPECT_LANE_RECORD(c, lane1, rec, 1000);
    memset(rec, 'c', sizeof rec);
    EXPECT_LANE_RECORD(c, lane1, rec, 1000);
    memset(rec, 'd', sizeof rec);
    EXPECT_LANE_RECORD(c, lane1, rec, 1000);
    memset(rec, 'x', sizeof rec);
    EXPECT_LANE_RECORD(c, lane1, rec, 1000);
    EXPECT_LANE_EMPTY(c);

    /* Waiting for room: a timeout on a lane that stays full drops and counts the record at the
     * deadline; with room, both waiting publishes queue at once; a record too large is refused
     * before any wait. */
    for (int i = 0; i < 4; i++) {
        OK(shmbus_lane_publisher_publish(p1, rec, sizeof rec, &queued));
        CHECK(queued);
    }
    OK(shmbus_lane_publisher_publish_timeout(p1, rec, sizeof rec, 1000000, &queued)); /* 1 ms */
    CHECK(!queued);
    OK(shmbus_lane_publisher_dropped(p1, &dropped));
    CHECK(dropped == 4);
    EXPECT(shmbus_lane_publisher_publish_timeout(p1, big, 4089, UINT64_MAX, &queued),
           SHMBUS_STATUS_MESSAGE_TOO_LARGE);
    EXPECT(shmbus_lane_publisher_publish_wait(p1, big, 4089), SHMBUS_STATUS_MESSAGE_TOO_LARGE);
    EXPECT(shmbus_lane_publisher_publish_wait(p1, NULL, 3), SHMBUS_STATUS_NULL_ARGUMENT);
    for (int i = 0; i < 4; i++)
        EXPECT_LANE_RECORD(c, lane1, rec, 1000);
    OK(shmbus_lane_publisher_publish_wait(p1, rec, sizeof rec));
    OK(shmbus_lane_publisher_publish_timeout(p1, rec, sizeof rec, UINT64_MAX, NULL));
    EXPECT_LANE_RECORD(c, lane1, rec, 1000);
    EXPECT_LANE_RECORD(c, lane1, rec, 1000);
    EXPECT_LANE_EMPTY(c);
    OK(shmbus_lane_publisher_dropped(p1, &dropped));
    CHECK(dropped == 4);

    /* Closing: the queued records, then the close with this session's drop count; the lane is
     * free again after it. */
    shmbus_lane_publisher_close(p2);
    EXPECT_LANE_CLOSED(c, lane2, 0, false);
    EXPECT_LANE_EMPTY(c);
    OK(shmbus_lane_publisher_publish(p1, (const uint8_t *)"last", 4, &queued));
    shmbus_lane_publisher_close(p1);
    EXPECT_LANE_RECORD(c, lane1, "last", 4);
    EXPECT_LANE_CLOSED(c, lane1, 4, false); /* with the one dropped at its timeout */
    EXPECT_LANE_EMPTY(c);
    MUST(shmbus_lanes_acquire(l2, &p1));
    OK(shmbus_lane_publisher_dropped(p1, &dropped));
    CHECK(dropped == 0);

    /* The waits: nothing within the timeout, then a record that is there. */
    OK(shmbus_lane_consumer_recv_timeout(c, 1000000, &r));
    CHECK(r.event == SHMBUS_LANE_EVENT_EMPTY);
    EXPECT(shmbus_lane_consumer_recv_timeout(c, 0, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    OK(shmbus_lane_publisher_publish(p1, (const uint8_t *)"waited", 6, &queued));
    EXPECT_LANE_RECORD(c, 0, "waited", 6);

    /* The readiness descriptor: the same one each time, readable once a record is there; the
     * receives that wait then poll it. */
    int fd = -1, fd2 = -2;
    EXPECT(shmbus_lane_consumer_fd(NULL, &fd), SHMBUS_STATUS_NULL_ARGUMENT);
    EXPECT(shmbus_lane_consumer_fd(c, NULL), SHMBUS_STATUS_NULL_ARGUMENT);
    OK(shmbus_lane_consumer_fd(c, &fd));
    OK(shmbus_lane_consumer_fd(c, &fd2));
    CHECK(fd >= 0 && fd == fd2);
    EXPECT_LANE_EMPTY(c);
    OK(shmbus_lane_publisher_publish(p1, (const uint8_t *)"ready", 5, &queued));
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    CHECK(poll(&pfd, 1, 20000) == 1 && (pfd.revents & POLLIN));
    OK(shmbus_lane_consumer_try_recv(c, &r));
    CHECK(r.event == SHMBUS_LANE_EVENT_RECORD && r.len == 5 && memcmp(r.data, "ready", 5) == 0);
    OK(shmbus_lane_consumer_recv_timeout(c, 1000000, &r));
    CHECK(r.event == SHMBUS_LANE_EVENT_EMPTY);
    OK(shmbus_lane_publisher_publish(p1, (const uint8_t *)"polled", 6, &queued));
    EXPECT_LANE_RECORD(c, 0, "polled", 6);
    shmbus_lane_publisher_close(p1);
    EXPECT_LANE_CLOSED(c, 0, 0, false);

    /* A producer that dies holding its lane: its records, then the close, marked. */
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        ShmbusLanes *cl = NULL;
        ShmbusLanePublisher *cp = NULL;
        if (shmbus_lanes_open(name, 0, &cl) != SHMBUS_STATUS_OK || shmbus_lanes_acquire(cl, &cp) != SHMBUS_STATUS_OK ||
            shmbus_lane_publisher_publish(cp, (const uint8_t *)"last words", 10, NULL) != SHMBUS_STATUS_OK)
            _exit(3);
        _exit(0); /* without closing */
    }
    int status = 0;
    CHECK(child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_LANE_RECORD(c, 0, "last words", 10);
    EXPECT_LANE_CLOSED(c, 0, 0, true);

    /* A record held when the consumer goes is acknowledged: the next consumer goes on after it. */
    MUST(shmbus_lanes_acquire(l, &p1));
    OK(shmbus_lane_publisher_publish(p1, (const uint8_t *)"one", 3, &queued));
    OK(shmbus_lane_publisher_publish(p1, (const uint8_t *)"two", 3, &queued));
    EXPECT_LANE_RECORD(c, 0, "one", 3);
    shmbus_lane_consumer_free(c);
    MUST(shmbus_lanes_consumer(l2, &c));
    EXPECT_LANE_RECORD(c, 0, "two", 3);
    EXPECT_LANE_EMPTY(c);

    /* Read-only: look only. */
    MUST(shmbus_lanes_open(name, SHMBUS_READ_ONLY, &ro));
    EXPECT(shmbus_lanes_acquire(ro, &p3), SHMBUS_STATUS_READ_ONLY);
    EXPECT(shmbus_lanes_consumer(ro, &c2), SHMBUS_STATUS_READ_ONLY);
    OK(shmbus_lanes_info(ro, &info));
    CHECK(info.read_only && info.has_consumer && info.lanes == 2);
    shmbus_lanes_free(ro);

    /* The list says what it is. */
    ShmbusList *list = NULL;
    MUST(shmbus_list(false, &list));
    size_t len = 0, seen = 0;
    OK(shmbus_list_len(list, &len));
    for (size_t i = 0; i < len; i++) {
        ShmbusListEntry e;
        OK(shmbus_list_get(list, i, &e));
        if (e.name && strcmp(e.name, name) == 0) {
            seen++;
            CHECK(e.kind == SHMBUS_KIND_LANES && e.status == SHMBUS_STATUS_OK);
        }
    }
    CHECK(seen == 1);
    shmbus_list_free(list);

    /* Wrong kind, both ways. */
    ShmbusBus *bus = NULL;
    EXPECT(shmbus_bus_open(name, 0, &bus), SHMBUS_STATUS_WRONG_KIND);
    const char *qname = uname("lanes-q");
    ShmbusQueue *q = NULL;
    MUST(shmbus_queue_create(qname, 0, 0, 0, 0, &q));
    ShmbusLanes *wrong = NULL;
    EXPECT(shmbus_lanes_open(qname, 0, &wrong), SHMBUS_STATUS_WRONG_KIND);
    CHECK(wrong == NULL);
    MESSAGE_HAS("queue");
    shmbus_queue_free(q);
    OK(shmbus_remove(qname));

    shmbus_lane_publisher_close(p1);
    shmbus_lane_consumer_free(c);
    shmbus_lanes_free(l2);
    shmbus_lanes_free(l);
    OK(shmbus_remove(name));
    EXPECT(shmbus_lanes_open(name, 0, &l), SHMBUS_STATUS_NOT_FOUND);
}

/* Segments with a Rust `Pod` type, made by `rust_peer typed BASE`. */
static void test_typed(const char *base) {
    char name[160];
    snprintf(name, sizeof name, "%s-bus", base);
    ShmbusBus *bus = NULL;
    MUST(shmbus_bus_open(name, 0, &bus));
    ShmbusBusInfo info;
    OK(shmbus_bus_info(bus, &info));
    CHECK(info.type_size == 16 && info.type_align == 8 && strcmp(info.type_name, "Pair") == 0);
    ShmbusPublisher *p = NULL;
    ShmbusSubscriber *sub = NULL;
    MUST(shmbus_bus_publisher(bus, &p));
    MUST(shmbus_bus_subscribe(bus, SHMBUS_START_NEXT, 0, 0, &sub));
    uint64_t pair[2] = {3, 4};
    EXPECT(shmbus_publisher_publish(p, (const uint8_t *)pair, 8, NULL), SHMBUS_STATUS_WRONG_MESSAGE_SIZE);
    MESSAGE_HAS("exactly 16 bytes");
    OK(shmbus_publisher_publish(p, (const uint8_t *)pair, 16, NULL));
    ShmbusReceived r;
    OK(shmbus_subscriber_try_recv(sub, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.len == 16 && memcmp(r.data, pair, 16) == 0);
    shmbus_subscriber_free(sub);
    shmbus_publisher_free(p);
    shmbus_bus_free(bus);
    OK(shmbus_remove(name));

    snprintf(name, sizeof name, "%s-queue", base);
    ShmbusQueue *q = NULL;
    MUST(shmbus_queue_open(name, 0, &q));
    ShmbusQueueInfo qinfo;
    OK(shmbus_queue_info(q, &qinfo));
    CHECK(qinfo.type_size == 8);
    ShmbusQueueSender *tx = NULL;
    ShmbusQueueReceiver *rx = NULL;
    MUST(shmbus_queue_sender(q, &tx));
    MUST(shmbus_queue_receiver(q, &rx));
    uint64_t item = 0x0102030405060708ull;
    EXPECT(shmbus_queue_try_send(tx, (const uint8_t *)&item, 4), SHMBUS_STATUS_WRONG_MESSAGE_SIZE);
    OK(shmbus_queue_try_send(tx, (const uint8_t *)&item, 8));
    OK(shmbus_queue_try_recv(rx, &r));
    CHECK(r.event == SHMBUS_EVENT_MESSAGE && r.len == 8 && memcmp(r.data, &item, 8) == 0);
    shmbus_queue_sender_free(tx);
    shmbus_queue_receiver_free(rx);
    shmbus_queue_free(q);
    OK(shmbus_remove(name));

    snprintf(name, sizeof name, "%s-board", base);
    ShmbusBoard *board = NULL;
    MUST(shmbus_board_open(name, 0, &board));
    ShmbusBoardInfo binfo;
    OK(shmbus_board_info(board, &binfo));
    CHECK(binfo.type_size == 4 && binfo.value_size == 4);
    ShmbusBoardWriter *w = NULL;
    EXPECT(shmbus_board_writer(board, &w), SHMBUS_STATUS_TYPE_MISMATCH);
    ShmbusBoardReader *rd = NULL;
    MUST(shmbus_board_reader(board, &rd));
    ShmbusValue v;
    OK(shmbus_board_get(rd, 1, &v));
    CHECK(!v.found);
    shmbus_board_reader_free(rd);
    shmbus_board_free(board);
    OK(shmbus_remove(name));
}

int main(int argc, char **argv) {
    test_status_and_version();
    test_argument_checks();
    test_error_message_is_per_thread();
    test_bus();
    test_multi_producer_bus();
    test_queue();
    test_records();
    test_board();
    test_list();
    test_lanes();
    if (argc > 1)
        test_typed(argv[1]);
    else
        printf("api: typed segments skipped (no base name given)\n");
    return finish("api");
}
