/* A bus from C: create it, publish two messages, read them back with their sequence numbers.
 * Build: see bindings/c/examples/CMakeLists.txt, or
 *   cc example.c $(pkg-config --cflags --libs shmbus) -o example */
#include <stdio.h>
#include <string.h>

#include <shmbus.h>

static int fail(const char *what, ShmbusStatus status) {
    fprintf(stderr, "%s: %s: %s\n", what, shmbus_status_name(status), shmbus_last_error_message());
    return 1;
}

int main(void) {
    ShmbusBus *bus;
    ShmbusStatus s = shmbus_bus_create("c-example", 1024, 64, 0, 0, &bus);
    if (s != SHMBUS_STATUS_OK) return fail("create", s);

    ShmbusPublisher *pub;
    ShmbusSubscriber *sub;
    if ((s = shmbus_bus_publisher(bus, &pub)) != SHMBUS_STATUS_OK) return fail("publisher", s);
    s = shmbus_bus_subscribe(bus, SHMBUS_START_OLDEST, 0, SHMBUS_LAP_POLICY_OLDEST, &sub);
    if (s != SHMBUS_STATUS_OK) return fail("subscribe", s);

    const char *words[] = {"hello", "world"};
    for (int i = 0; i < 2; i++) {
        s = shmbus_publisher_publish(pub, (const uint8_t *)words[i], strlen(words[i]), NULL);
        if (s != SHMBUS_STATUS_OK) return fail("publish", s);
    }

    ShmbusReceived r;
    int got = 0;
    while (shmbus_subscriber_try_recv(sub, &r) == SHMBUS_STATUS_OK && r.event == SHMBUS_EVENT_MESSAGE) {
        printf("%llu: %.*s\n", (unsigned long long)r.seq, (int)r.len, (const char *)r.data);
        got++;
    }

    shmbus_subscriber_free(sub);
    shmbus_publisher_free(pub);
    shmbus_bus_free(bus);
    shmbus_remove("c-example");
    return got == 2 ? 0 : 1;
}
