/* A closed-loop HTTP/1.1 load generator for bench/bench_api.py (decision 0108).

   http_load HOST PORT CLIENTS SECONDS REQUESTS_FILE

   CLIENTS threads, each with one kept-alive TCP connection, send GET requests picked at random
   from REQUESTS_FILE (raw requests, each ending with an empty line "\r\n\r\n", no bodies) one at
   a time for SECONDS, and read each response in full (status line, headers, Content-Length
   bytes of body). Prints one line per response on stdout: "<status> <latency in microseconds>",
   the latency from just before the write to the last byte read (CLOCK_MONOTONIC), like pgbench's
   per-transaction log. Exits non-zero, with one line on stderr, on any error of the connection
   or of the response's framing.

   Why C: pgbench, the other side of the comparison, is C; a Python client spent 75-220 us of CPU
   per request on the same 2 cores as the server and queued the responses of its 8 connections
   behind one event loop (bench/README.md, "API balance read against pgbench"). Built by the
   bench itself (bench_api.http_load_binary) with the machine's C compiler. */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    CLIENTS_MAX = 256,
    REQUESTS_MAX = 4096,
    RESPONSE_HEAD_BYTES_MAX = 8192,
    RESPONSE_BODY_BYTES_MAX = 65536,
    LATENCIES_PER_CLIENT_MAX = 4000000,
};

typedef struct {
    const char *bytes;
    size_t length;
} Request;

typedef struct {
    int number;
    struct sockaddr_in address;
    double seconds;
    const Request *requests;
    int request_count;
    int *statuses;
    uint32_t *latencies_us;
    long capacity;
    long count;
} Client;

static void fail(const char *what) {
    fprintf(stderr, "http_load: %s: %s\n", what, errno ? strerror(errno) : "bad response");
    exit(2);
}

static double now_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void write_all(int socket_fd, const char *bytes, size_t length) {
    while (length > 0) {
        ssize_t written = write(socket_fd, bytes, length);
        if (written <= 0) fail("write");
        bytes += written;
        length -= (size_t)written;
    }
}

/* Reads one response; returns its status. `buffer` holds RESPONSE_HEAD_BYTES_MAX +
   RESPONSE_BODY_BYTES_MAX bytes. Responses are read one at a time, so nothing follows one. */
static int read_response(int socket_fd, char *buffer) {
    size_t filled = 0;
    char *head_end = NULL;
    while (head_end == NULL) {
        if (filled >= RESPONSE_HEAD_BYTES_MAX) fail("response head too long");
        ssize_t got = read(socket_fd, buffer + filled, RESPONSE_HEAD_BYTES_MAX - filled);
        if (got <= 0) fail("read");
        filled += (size_t)got;
        head_end = memmem(buffer, filled, "\r\n\r\n", 4);
    }
    size_t head_length = (size_t)(head_end - buffer) + 4;
    if (filled < 12 || memcmp(buffer, "HTTP/1.1 ", 9) != 0) fail("status line");
    int status = atoi(buffer + 9);
    long body_length = -1;
    for (char *line = buffer; line < head_end; line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, "content-length:", 15) == 0) body_length = atol(line + 15);
    }
    if (body_length < 0 || body_length > RESPONSE_BODY_BYTES_MAX) fail("content-length");
    size_t total = head_length + (size_t)body_length;
    while (filled < total) {
        ssize_t got = read(socket_fd, buffer + filled, total - filled);
        if (got <= 0) fail("read body");
        filled += (size_t)got;
    }
    if (filled != total) fail("bytes after the response");
    return status;
}

static void *run_client(void *argument) {
    Client *client = argument;
    int socket_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (socket_fd < 0) fail("socket");
    int one = 1;
    setsockopt(socket_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(socket_fd, (struct sockaddr *)&client->address, sizeof client->address) != 0)
        fail("connect");
    char *buffer = malloc(RESPONSE_HEAD_BYTES_MAX + RESPONSE_BODY_BYTES_MAX);
    if (buffer == NULL) fail("malloc");
    uint64_t state = 0x9E3779B97F4A7C15ULL * (uint64_t)(client->number + 1);
    double deadline = now_s() + client->seconds;
    struct timespec started, ended;
    while (client->count < client->capacity) {
        clock_gettime(CLOCK_MONOTONIC, &started);
        if ((double)started.tv_sec + (double)started.tv_nsec / 1e9 >= deadline) break;
        state ^= state << 13, state ^= state >> 7, state ^= state << 17; /* xorshift64 */
        const Request *request = &client->requests[state % (uint64_t)client->request_count];
        write_all(socket_fd, request->bytes, request->length);
        int status = read_response(socket_fd, buffer);
        clock_gettime(CLOCK_MONOTONIC, &ended);
        int64_t elapsed_ns = (int64_t)(ended.tv_sec - started.tv_sec) * 1000000000LL +
                             (ended.tv_nsec - started.tv_nsec);
        client->statuses[client->count] = status;
        client->latencies_us[client->count] = (uint32_t)(elapsed_ns / 1000);
        client->count++;
    }
    close(socket_fd);
    free(buffer);
    return NULL;
}

/* Splits the file's bytes into requests, each ending with "\r\n\r\n". */
static int split_requests(char *bytes, size_t length, Request *requests) {
    int count = 0;
    char *cursor = bytes, *end = bytes + length;
    while (cursor < end) {
        char *stop = memmem(cursor, (size_t)(end - cursor), "\r\n\r\n", 4);
        if (stop == NULL || count >= REQUESTS_MAX) fail("requests file");
        requests[count].bytes = cursor;
        requests[count].length = (size_t)(stop - cursor) + 4;
        count++;
        cursor = stop + 4;
    }
    return count;
}

static char *read_file(const char *path, size_t *length) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) fail(path);
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *bytes = malloc((size_t)size + 1);
    if (bytes == NULL || fread(bytes, 1, (size_t)size, file) != (size_t)size) fail(path);
    fclose(file);
    *length = (size_t)size;
    return bytes;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: http_load HOST PORT CLIENTS SECONDS REQUESTS_FILE\n");
        return 1;
    }
    int clients = atoi(argv[3]);
    double seconds = atof(argv[4]);
    if (clients < 1 || clients > CLIENTS_MAX || seconds <= 0) {
        fprintf(stderr, "http_load: CLIENTS in 1..%d, SECONDS > 0\n", CLIENTS_MAX);
        return 1;
    }
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &address.sin_addr) != 1) fail("HOST (an IPv4 address)");
    size_t length;
    char *bytes = read_file(argv[5], &length);
    static Request requests[REQUESTS_MAX];
    int request_count = split_requests(bytes, length, requests);
    if (request_count == 0) fail("no requests");
    long capacity = (long)(seconds * 100000) + 1000; /* 100k responses/s per client at most */
    if (capacity > LATENCIES_PER_CLIENT_MAX) capacity = LATENCIES_PER_CLIENT_MAX;
    static Client state[CLIENTS_MAX];
    pthread_t threads[CLIENTS_MAX];
    for (int number = 0; number < clients; number++) {
        Client *client = &state[number];
        *client = (Client){number, address, seconds, requests, request_count, NULL, NULL, capacity, 0};
        client->statuses = malloc(sizeof(int) * (size_t)capacity);
        client->latencies_us = malloc(sizeof(uint32_t) * (size_t)capacity);
        if (client->statuses == NULL || client->latencies_us == NULL) fail("malloc");
        if (pthread_create(&threads[number], NULL, run_client, client) != 0) fail("thread");
    }
    for (int number = 0; number < clients; number++) pthread_join(threads[number], NULL);
    for (int number = 0; number < clients; number++) {
        for (long index = 0; index < state[number].count; index++)
            printf("%d %u\n", state[number].statuses[index], state[number].latencies_us[index]);
    }
    return 0;
}
