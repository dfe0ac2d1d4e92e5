/* cserver: the "C epoll limit" row. One epoll loop, no threads.
 *
 *   cserver echo --port P      echo every line back
 *   cserver chat --port P      the chat seed subset of PROTOCOL.md
 *
 * Each client has an input buffer (a line is at most 4096 bytes; a longer
 * one ends the session) and an output buffer. Chat broadcasts append the line
 * to every member's output buffer, and the buffers touched in one loop
 * iteration are flushed with one send() each at its end, in the order they
 * were first written (join order for a broadcast: the earliest members, who
 * are the benchmark's senders, hear back first, so their next lines arrive
 * while the rest is being sent and make one batch). A member whose unsent
 * output passes 1 MiB is disconnected, and the others see it leave.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE 4096
#define MAX_BACKLOG (1u << 20)
#define MAX_HANDLE 32
#define MAX_EVENTS 512
#define HASH_SIZE 65536

enum state { AT_PROMPT, MEMBER, CLOSED };

struct client {
    int fd;
    enum state state;
    char handle[MAX_HANDLE + 1];
    char folded[MAX_HANDLE + 1];
    char *in;
    size_t inlen, incap;
    char *out;
    size_t outoff, outlen, outcap;
    int want_out, dirty;
    struct client *prev, *next;  /* members in join order */
    struct client *hnext;        /* hash chain by folded handle */
    struct client *dirty_next;   /* output appended this iteration */
    struct client *closed_next;  /* freed at the end of the iteration */
};

static int chat_mode, epfd, listen_fd, nmembers;
static struct client *first, *last, *closed_list;
static struct client *dirty_head, *dirty_tail; /* flushed first-written first */
static struct client *by_handle[HASH_SIZE];
static char rbuf[65536];

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h % HASH_SIZE;
}

static struct client *find_member(const char *folded)
{
    for (struct client *c = by_handle[hash(folded)]; c; c = c->hnext)
        if (!strcmp(c->folded, folded))
            return c;
    return NULL;
}

static void set_want_out(struct client *c, int want)
{
    if (c->want_out == want || c->state == CLOSED)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
}

static void drop(struct client *c);

/* Sends what is pending; 0 if the client was closed. */
static int flush(struct client *c)
{
    while (c->outlen > 0) {
        ssize_t n = send(c->fd, c->out + c->outoff, c->outlen, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            drop(c);
            return 0;
        }
        c->outoff += (size_t)n;
        c->outlen -= (size_t)n;
    }
    if (c->outlen == 0)
        c->outoff = 0; /* the buffer stays for the next batch; sweep() frees idle ones */
    set_want_out(c, c->outlen > 0);
    return 1;
}

/* Appends to c's output; it is sent at the end of this loop iteration. */
static void queue_out(struct client *c, const char *data, size_t len)
{
    if (c->state == CLOSED)
        return;
    if (c->outlen + len > MAX_BACKLOG) {
        drop(c);
        return;
    }
    if (c->outoff + c->outlen + len > c->outcap) {
        if (c->outoff) {
            memmove(c->out, c->out + c->outoff, c->outlen);
            c->outoff = 0;
        }
        if (c->outlen + len > c->outcap) {
            size_t cap = c->outcap ? c->outcap : 512;
            while (cap < c->outlen + len)
                cap *= 2;
            c->out = realloc(c->out, cap);
            if (!c->out)
                die("realloc");
            c->outcap = cap;
        }
    }
    memcpy(c->out + c->outoff + c->outlen, data, len);
    c->outlen += len;
    if (!c->dirty) {
        c->dirty = 1;
        c->dirty_next = NULL;
        if (dirty_tail)
            dirty_tail->dirty_next = c;
        else
            dirty_head = c;
        dirty_tail = c;
    }
}

static void say(struct client *c, const char *text)
{
    queue_out(c, text, strlen(text));
}

static void broadcast(const char *text, size_t len)
{
    struct client *next;
    for (struct client *m = first; m; m = next) {
        next = m->next; /* queue_out may drop m */
        queue_out(m, text, len);
    }
}

static void leave(struct client *c)
{
    struct client **pp = &by_handle[hash(c->folded)];
    while (*pp != c)
        pp = &(*pp)->hnext;
    *pp = c->hnext;
    if (c->prev)
        c->prev->next = c->next;
    else
        first = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        last = c->prev;
    nmembers--;
    char line[MAX_HANDLE + 32];
    int n = snprintf(line, sizeof line, "%s has left the chat.\r\n", c->handle);
    broadcast(line, (size_t)n);
}

/* Closes c now; its memory is freed at the end of the loop iteration. */
static void drop(struct client *c)
{
    if (c->state == CLOSED)
        return;
    int was_member = c->state == MEMBER;
    c->state = CLOSED;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->closed_next = closed_list;
    closed_list = c;
    if (was_member)
        leave(c);
}

static int valid_handle(const char *s, size_t len)
{
    if (len < 1 || len > MAX_HANDLE)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return 0;
    }
    return 1;
}

static void join(struct client *c, const char *handle, size_t len)
{
    memcpy(c->handle, handle, len);
    c->handle[len] = 0;
    for (size_t i = 0; i <= len; i++)
        c->folded[i] = (c->handle[i] >= 'A' && c->handle[i] <= 'Z') ? c->handle[i] + 32 : c->handle[i];
    c->state = MEMBER;
    c->prev = last;
    c->next = NULL;
    if (last)
        last->next = c;
    else
        first = c;
    last = c;
    unsigned h = hash(c->folded);
    c->hnext = by_handle[h];
    by_handle[h] = c;
    nmembers++;

    char line[MAX_HANDLE + 32];
    int n = snprintf(line, sizeof line, "%s has joined the chat.\r\n", c->handle);
    broadcast(line, (size_t)n);
    if (c->state == CLOSED)
        return;
    size_t cap = 32 + (size_t)nmembers * (MAX_HANDLE + 2), off = 0;
    char *online = malloc(cap);
    if (!online)
        die("malloc");
    off += (size_t)snprintf(online, cap, "Online (%d): ", nmembers);
    for (struct client *m = first; m; m = m->next) {
        size_t hl = strlen(m->handle);
        if (m != first) {
            memcpy(online + off, ", ", 2);
            off += 2;
        }
        memcpy(online + off, m->handle, hl);
        off += hl;
    }
    memcpy(online + off, "\r\n", 2);
    queue_out(c, online, off + 2);
    free(online);
}

static void on_chat_line(struct client *c, char *line, size_t len)
{
    while (len && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
        len--;
    while (len && (line[0] == ' ' || line[0] == '\t')) {
        line++;
        len--;
    }
    if (c->state == AT_PROMPT) {
        if (!valid_handle(line, len)) {
            say(c, "Invalid handle: use 1 to 32 letters, digits, '_', '-' or '.'.\r\n"
                   "What is your handle?\r\n");
            return;
        }
        char folded[MAX_HANDLE + 1];
        for (size_t i = 0; i < len; i++)
            folded[i] = (line[i] >= 'A' && line[i] <= 'Z') ? line[i] + 32 : line[i];
        folded[len] = 0;
        if (find_member(folded)) {
            say(c, "That handle is already taken.\r\nWhat is your handle?\r\n");
            return;
        }
        join(c, line, len);
        return;
    }
    if (len == 0)
        return;
    if (len == 5 && !memcmp(line, "/quit", 5)) {
        flush(c);
        drop(c);
        return;
    }
    char msg[MAX_LINE + MAX_HANDLE + 80];
    int n;
    if (line[0] == '/') {
        size_t w = 1;
        while (w < len && line[w] != ' ')
            w++;
        n = snprintf(msg, sizeof msg, "Unknown command: %.*s. Type /help for a list.\r\n",
                     (int)w, line);
        queue_out(c, msg, (size_t)n);
        return;
    }
    n = snprintf(msg, sizeof msg, "%s says: %.*s\r\n", c->handle, (int)len, line);
    broadcast(msg, (size_t)n);
}

static void on_readable(struct client *c)
{
    ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(c);
        return;
    }
    if (n < 0)
        return;
    if (!chat_mode) { /* echo the complete lines, keep the rest */
        const char *lastnl = memrchr(rbuf, '\n', (size_t)n);
        if (!lastnl) {
            if (c->inlen + (size_t)n > MAX_LINE) {
                drop(c);
                return;
            }
        } else {
            if (c->inlen)
                queue_out(c, c->in, c->inlen);
            c->inlen = 0;
            queue_out(c, rbuf, (size_t)(lastnl + 1 - rbuf));
            n = (rbuf + n) - (lastnl + 1);
            memmove(rbuf, lastnl + 1, (size_t)n);
        }
        if (n) {
            if (c->inlen + (size_t)n > c->incap) {
                c->incap = c->inlen + (size_t)n;
                c->in = realloc(c->in, c->incap);
            }
            memcpy(c->in + c->inlen, rbuf, (size_t)n);
            c->inlen += (size_t)n;
        }
        return;
    }
    char *p = rbuf, *end = rbuf + n;
    while (p < end && c->state != CLOSED) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t take = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (c->inlen + take > MAX_LINE) {
            drop(c);
            return;
        }
        if (nl && c->inlen == 0) {
            on_chat_line(c, p, take);
        } else {
            if (c->inlen + take > c->incap) {
                c->incap = c->inlen + take < 256 ? 256 : c->inlen + take;
                c->in = realloc(c->in, c->incap);
                if (!c->in)
                    die("realloc");
            }
            memcpy(c->in + c->inlen, p, take);
            c->inlen += take;
            if (nl) {
                size_t len = c->inlen;
                c->inlen = 0;
                on_chat_line(c, c->in, len);
            }
        }
        if (!nl)
            break;
        p = nl + 1;
    }
}

/* Twice a second: a member whose output is drained gives its buffer back, so
 * idle members cost little and busy ones do not malloc and free every batch. */
static void sweep(void)
{
    size_t freed = 0;
    for (struct client *c = first; c; c = c->next)
        if (c->outlen == 0 && c->out) {
            freed += c->outcap;
            free(c->out);
            c->out = NULL;
            c->outcap = 0;
        }
    if (freed > (1u << 20))
        malloc_trim(0); /* hand the pages back, or RSS keeps the high-water mark */
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_accept(void)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or EMFILE: try again on the next event */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct client *c = calloc(1, sizeof *c);
        if (!c)
            die("calloc");
        c->fd = fd;
        c->state = AT_PROMPT;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
        if (chat_mode)
            say(c, "What is your handle?\r\n");
    }
}

int main(int argc, char **argv)
{
    int port = -1;
    if (argc >= 2 && !strcmp(argv[1], "chat"))
        chat_mode = 1;
    else if (argc < 2 || strcmp(argv[1], "echo")) {
        fprintf(stderr, "usage: cserver echo|chat --port P\n");
        return 64;
    }
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[++i]);
    if (port < 0) {
        fprintf(stderr, "cserver: --port is required\n");
        return 64;
    }
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    if (listen(listen_fd, 1024) < 0)
        die("listen");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &lev);

    struct epoll_event events[MAX_EVENTS];
    long long next_sweep = now_ms() + 500;
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, 500);
        if (now_ms() >= next_sweep) {
            sweep();
            next_sweep = now_ms() + 500;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct client *c = events[i].data.ptr;
            if (!c) {
                on_accept();
                continue;
            }
            if (c->state == CLOSED)
                continue;
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(c);
            if (c->state != CLOSED && (events[i].events & EPOLLOUT))
                flush(c);
        }
        while (dirty_head) { /* one send per client touched this iteration */
            struct client *c = dirty_head;
            dirty_head = c->dirty_next;
            if (!dirty_head)
                dirty_tail = NULL;
            c->dirty = 0;
            if (c->state != CLOSED)
                flush(c);
        }
        while (closed_list) {
            struct client *c = closed_list;
            closed_list = c->closed_next;
            free(c->in);
            free(c->out);
            free(c);
        }
    }
}
