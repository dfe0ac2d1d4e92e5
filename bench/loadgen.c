/* loadgen: the benchmark client. One epoll loop, no threads.
 *
 *   loadgen echo --port P [--conns 100] [--size 64] [--warmup 1] [--duration 5]
 *   loadgen chat --port P [--members 100] [--senders 10] [--window 8]
 *                [--warmup 1] [--duration 5] [--drain 5]
 *   loadgen idle --port P [--members 10000] [--hold 600] [--probe-ms 50] [--fanout 5]
 *
 * Common: [--host 127.0.0.1] [--ramp 32] [--batch 100] [--timeout 300] [--spin]
 *         [--server-pid PID]: also report the share of a CPU the server and
 *         this client used during the measured window (1.0 = one whole CPU)
 *
 * echo: each connection sends one line of --size bytes (ending in \n) and
 *       waits for it to come back, for --duration seconds after --warmup.
 *       Prints {"req_s", "p50_us", "p99_us", ...}.
 * chat: --members connections log in to a chat-seed server, wait until
 *       every join line has arrived (M(M+1)/2 of them), then the
 *       first --senders members send numbered, timestamped lines, at most
 *       --window of their own lines unacknowledged (a line is acknowledged
 *       when its sender receives it back). Every member reads everything.
 *       After --duration the senders stop and every member waits up to
 *       --drain seconds for the lines still in flight. Prints delivered
 *       lines/s, send-to-receive p50/p99, and lost and misordered lines.
 * idle: logs --members in as chat does, waits for every join line, then
 *       member 0 says --fanout lines, one at a time (the next once every
 *       member has the last, or after 10 s), each timestamped; then prints
 *       {"ready": true, "login_s", "probe_p99_us", "fanout_p99_us", ...}
 *       and holds the connections (reading whatever comes) until stdin
 *       closes, SIGTERM, or --hold seconds pass. The probe: from its own
 *       login until every join line has arrived, member 0 says a line every
 *       --probe-ms (0: never) and waits for it to come back to itself (one
 *       in flight), so probe_p50/p99_us is how long the server kept a
 *       logged-in member waiting during the logins. fanout_p50/p99_us are
 *       over every member's receipt of every fan-out line; fanout_all_us is
 *       the median over lines of the time until the last member had it.
 *
 * Logins (chat, idle) go `--batch` members at a time: connect them, with at
 * most --ramp connects unanswered, then send all their handles back to back
 * and wait for every Online line, as a crowd logging in at once would; echo
 * keeps at most --ramp connections without a first answer.
 *
 * Every mode prints exactly one JSON object per line on stdout; the last one
 * is the result. Diagnostics go to stderr. --timeout bounds the whole run.
 * --spin busy-polls epoll instead of sleeping in it (off by default: on a
 * shared machine a spinning client competes for its CPU).
 *
 * --ws PATH (chat, idle): each member opens a WebSocket (RFC 6455) at PATH:
 * an upgrade request, then the 101 answer; it sends each line as one masked
 * text frame (without its \n) and reads each text frame the server sends
 * as one line, as a browser on the chat page does. No compression offered;
 * control frames from the server are skipped.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PART_MAX 192          /* we only ever need the start of a line */
#define READ_CHUNK 65536
#define MAX_EVENTS 512

enum mode { MODE_ECHO, MODE_CHAT, MODE_IDLE };
enum phase { PH_LOGIN, PH_SETTLE, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_FANOUT, PH_HOLD, PH_DONE };
static const char *phase_name[] = {"login", "settle", "warmup", "measure", "drain", "fanout",
                                   "hold", "done"};

struct conn {
    int fd;
    int idx;
    int connected;       /* the TCP connect finished */
    int ready;           /* echo: got its first response; chat: logged in */
    int dead;
    char part[PART_MAX]; /* the start of the current incomplete line */
    size_t partlen;      /* its length (bytes past PART_MAX are dropped) */
    char *out;           /* bytes not yet accepted by the kernel */
    size_t outlen, outcap;
    int want_out;
    uint64_t sent_at;    /* echo: when the request in flight was sent */
    uint32_t *expect;    /* chat: next sequence number expected per sender */
    uint64_t order_hash; /* chat: rolling hash of the order of says-lines */
    uint32_t next_seq;   /* sender: number of lines sent */
    uint32_t inflight;   /* sender: own lines not yet received back */
    /* --ws: the HTTP upgrade's answer, then frames (RFC 6455) */
    int ws_open;         /* the 101 answer's head has been read */
    int ws_crlf;         /* how much of "\r\n\r\n" the head ends with so far */
    unsigned char ws_hdr[14];
    size_t ws_hdrlen;    /* bytes of the current frame's header read */
    uint64_t ws_left;    /* payload bytes of the current frame still to come */
    int ws_text;         /* the current frame carries text (a line) */
};

/* ---- settings and state ---- */
static enum mode mode;
static const char *host = "127.0.0.1";
static int port, nconns = 100, line_size = 64, ramp = 32, batch = 100;
static int members = 100, senders = 10, window_size = 8, refill = 1;
static double warmup_s = 1.0, duration_s = 5.0, drain_s = 5.0, hold_s = 600.0, timeout_s = 300.0;

static struct conn *conns;
static int epfd;
static enum phase phase = PH_LOGIN;
static uint64_t t_start, phase_deadline, measure_start, measure_end, t_login_done;
static int opened, established, ready_count, dead_count;
static int prompted, handles_sent, batch_end; /* chat and idle logins */
static uint64_t joins_seen, joins_expected;
static uint64_t says_total, says_measured, echo_measured, errors;
static uint64_t lost_gaps, inversions;
static char request[4096];
static volatile sig_atomic_t stop_requested;
static int spin = 0;
static uint64_t batch_now; /* when the data being parsed was read */
static int server_pid;      /* --server-pid: its CPU use is measured too */
static const char *ws_path; /* --ws PATH: members talk WebSocket, one text message a line */
static double server_cpu0, client_cpu0, server_cpu_share = -1, client_cpu_share = -1;
/* idle: the probe during logins, and the fan-out of member 0's lines after */
static double probe_ms = 50.0;
static int fanout_lines = 5;
static int probe_inflight;
static uint64_t probe_next_at, probe_sent_at;
static int fanout_sent, fanout_seen;   /* lines said; members that have the last one */
static uint64_t fanout_sent_at, fanout_all[64], fanout_missing, t_settled;

/* ---- time ---- */
static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- latency histogram: 1 us steps below 2048 us, then 128 steps per octave ---- */
#define H_LINEAR 2048
#define H_SUB 128
#define H_BUCKETS (H_LINEAR + 44 * H_SUB)
struct hist {
    uint64_t n, b[H_BUCKETS];
};
static struct hist lat, probe_lat; /* lat: echo, chat, and idle's fan-out */

static void hist_add_to(struct hist *h, uint64_t v)
{
    size_t i;
    if (v < H_LINEAR) {
        i = (size_t)v;
    } else {
        int e = 63 - __builtin_clzll(v); /* 2^e <= v < 2^(e+1), e >= 11 */
        i = H_LINEAR + (size_t)(e - 11) * H_SUB + ((v >> (e - 7)) & (H_SUB - 1));
        if (i >= H_BUCKETS)
            i = H_BUCKETS - 1;
    }
    h->b[i]++;
    h->n++;
}

static void hist_add(uint64_t v) { hist_add_to(&lat, v); }

static double hist_bucket_value(size_t i)
{
    if (i < H_LINEAR)
        return (double)i;
    int e = 11 + (int)((i - H_LINEAR) / H_SUB);
    uint64_t sub = (i - H_LINEAR) % H_SUB;
    uint64_t lower = (H_SUB + sub) << (e - 7);
    return (double)lower + (double)(1ull << (e - 7)) / 2.0;
}

static double hist_percentile_of(const struct hist *h, double p)
{
    if (h->n == 0)
        return -1;
    uint64_t target = (uint64_t)(p * (double)h->n + 0.999999), seen = 0;
    if (target < 1)
        target = 1;
    for (size_t i = 0; i < H_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= target)
            return hist_bucket_value(i);
    }
    return hist_bucket_value(H_BUCKETS - 1);
}

static double hist_percentile(double p) { return hist_percentile_of(&lat, p); }

/* ---- CPU use over the measured window ---- */
static double server_cpu_seconds(void)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long utime = 0, stime = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                     &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double client_cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void cpu_mark_start(void)
{
    client_cpu0 = client_cpu_seconds();
    server_cpu0 = server_pid ? server_cpu_seconds() : -1;
}

static void cpu_mark_end(double seconds)
{
    client_cpu_share = (client_cpu_seconds() - client_cpu0) / seconds;
    if (server_pid && server_cpu0 >= 0) {
        double now = server_cpu_seconds();
        if (now >= 0)
            server_cpu_share = (now - server_cpu0) / seconds;
    }
}

/* ---- small helpers ---- */
static void die(const char *what)
{
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
    fflush(stdout);
    exit(2);
}

static void fail(const char *msg)
{
    printf("{\"error\": \"%s (phase %s)\"}\n", msg, phase_name[phase]);
    fflush(stdout);
    exit(2);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void set_events(struct conn *c, int want_out)
{
    if (c->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->want_out = want_out;
}

static void conn_dead(struct conn *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    dead_count++;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (phase <= PH_SETTLE && mode != MODE_ECHO)
        fail("a member was disconnected during login");
}

static void flush_out(struct conn *c)
{
    while (c->outlen > 0) {
        ssize_t n = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            conn_dead(c);
            return;
        }
        memmove(c->out, c->out + n, c->outlen - (size_t)n);
        c->outlen -= (size_t)n;
    }
    set_events(c, c->outlen > 0);
}

/* Queue bytes for c and try to send them now. */
static void conn_send(struct conn *c, const char *data, size_t len)
{
    if (c->dead)
        return;
    if (c->outlen + len > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 256;
        while (cap < c->outlen + len)
            cap *= 2;
        c->out = realloc(c->out, cap);
        if (!c->out)
            die("realloc");
        c->outcap = cap;
    }
    memcpy(c->out + c->outlen, data, len);
    c->outlen += len;
    if (!c->want_out)
        flush_out(c);
}

/* Send lines ("...\n" each): as they are, or under --ws one masked text frame
 * per line (without its \n), as a browser sends them. */
static void send_lines(struct conn *c, const char *data, size_t len)
{
    if (!ws_path) {
        conn_send(c, data, len);
        return;
    }
    char frames[64 * 40];
    size_t n = 0;
    static const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    const char *p = data, *end = data + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t line = (size_t)((nl ? nl : end) - p);
        if (line > 125 || n + 6 + line > sizeof frames)
            fail("a line too long for the --ws frame buffer");
        frames[n++] = (char)0x81;
        frames[n++] = (char)(0x80 | line);
        memcpy(frames + n, mask, 4);
        n += 4;
        for (size_t i = 0; i < line; i++)
            frames[n++] = (char)(p[i] ^ mask[i & 3]);
        p += line + 1;
    }
    conn_send(c, frames, n);
}

static void send_upgrade(struct conn *c)
{
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", ws_path, host, port);
    conn_send(c, req, (size_t)n);
}

/* ---- connecting, with at most `ramp` connections not yet ready ---- */
static int total_conns(void) { return mode == MODE_ECHO ? nconns : members; }

static void open_conn(int i)
{
    struct conn *c = &conns[i];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    c->idx = i;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS)
        die("connect");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->want_out = 1; /* until the connect completes */
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl add");
    opened++;
}

static void send_handle(struct conn *c)
{
    char h[32];
    int n = snprintf(h, sizeof h, "m%d\n", c->idx);
    send_lines(c, h, (size_t)n);
}

/* echo: at most `ramp` connections without a first answer. chat and idle:
 * members log in `batch` at a time: connect them (at most `ramp` connects
 * pending), and once all of the batch have their prompt, send all their
 * handles back to back, as a crowd logging in at once would. */
static void open_more(void)
{
    if (mode == MODE_ECHO) {
        while (opened < nconns && opened - ready_count < ramp)
            open_conn(opened);
        return;
    }
    if (ready_count == batch_end && batch_end < members)
        batch_end = batch_end + batch < members ? batch_end + batch : members;
    while (opened < batch_end && opened - prompted < ramp)
        open_conn(opened);
    if (prompted == batch_end && handles_sent < batch_end) {
        for (; handles_sent < batch_end; handles_sent++)
            send_handle(&conns[handles_sent]);
    }
}

static void send_request(struct conn *c)
{
    c->sent_at = now_us();
    conn_send(c, request, (size_t)line_size);
}

static void on_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        errno = err;
        die("connect");
    }
    c->connected = 1;
    established++;
    c->want_out = 1;
    set_events(c, 0);
    if (mode == MODE_ECHO)
        send_request(c);
    else if (ws_path)
        send_upgrade(c);
}

/* ---- chat senders ---- */
static int sending(void) { return phase == PH_WARMUP || phase == PH_MEASURE; }

static void top_up(struct conn *c)
{
    char buf[64 * 32];
    size_t len = 0;
    if (c->inflight + (uint32_t)refill > (uint32_t)window_size)
        return; /* refill in bursts of at least `refill` lines */
    while (!c->dead && c->inflight < (uint32_t)window_size && len + 64 <= sizeof buf) {
        len += (size_t)snprintf(buf + len, 64, "%u %llu\n", c->next_seq,
                                (unsigned long long)now_us());
        c->next_seq++;
        c->inflight++;
    }
    if (len)
        send_lines(c, buf, len);
}

/* ---- parsing what the server sends ---- */
static int starts_with(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Parses an unsigned decimal at *p (bounded by end); -1 if there is none. */
static long long parse_uint(const char **p, const char *end)
{
    const char *s = *p;
    long long v = 0;
    if (s >= end || *s < '0' || *s > '9')
        return -1;
    while (s < end && *s >= '0' && *s <= '9')
        v = v * 10 + (*s++ - '0');
    *p = s;
    return v;
}

static void on_says(struct conn *c, const char *line, size_t len)
{
    /* "m<sender> says: <seq> <t_us>" */
    const char *p = line + 1, *end = line + len;
    long long sender = parse_uint(&p, end);
    if (sender < 0 || !starts_with(p, (size_t)(end - p), " says: "))
        return;
    p += 7;
    long long seq = parse_uint(&p, end);
    if (seq < 0 || p >= end || *p != ' ')
        return;
    p++;
    long long sent = parse_uint(&p, end);
    if (sent < 0 || sender >= senders)
        return;
    uint32_t *exp = &c->expect[sender];
    if ((uint32_t)seq == *exp) {
        (*exp)++;
    } else if ((uint32_t)seq > *exp) {
        lost_gaps += (uint32_t)seq - *exp;
        *exp = (uint32_t)seq + 1;
    } else {
        inversions++;
    }
    c->order_hash = (c->order_hash ^ (((uint64_t)sender << 32) | (uint64_t)seq)) * 1099511628211ull;
    says_total++;
    uint64_t t = batch_now;
    if (phase == PH_MEASURE && t < measure_end) {
        says_measured++;
        hist_add(t >= (uint64_t)sent ? t - (uint64_t)sent : 0);
    }
    if (sender == c->idx && c->inflight > 0)
        c->inflight--;
}

static void say_fanout(uint64_t t);

/* idle: "m<sender> says: probe <t_us>" or "m<sender> says: fanout <n> <t_us>" */
static void on_idle_says(struct conn *c, const char *line, size_t len)
{
    const char *p = line + 1, *end = line + len;
    long long sender = parse_uint(&p, end);
    if (sender != 0 || !starts_with(p, (size_t)(end - p), " says: "))
        return;
    p += 7;
    uint64_t t = batch_now;
    if (starts_with(p, (size_t)(end - p), "probe ")) {
        p += 6;
        long long sent = parse_uint(&p, end);
        if (c->idx == 0 && probe_inflight && sent >= 0 && (uint64_t)sent == probe_sent_at) {
            hist_add_to(&probe_lat, t - probe_sent_at);
            probe_inflight = 0;
        }
    } else if (starts_with(p, (size_t)(end - p), "fanout ")) {
        p += 7;
        long long number = parse_uint(&p, end);
        if (number < 0 || p >= end || *p != ' ' || number != fanout_sent - 1)
            return;
        p++;
        long long sent = parse_uint(&p, end);
        if (sent < 0)
            return;
        hist_add(t >= (uint64_t)sent ? t - (uint64_t)sent : 0);
        if (++fanout_seen == members - dead_count)
            fanout_all[number] = t - fanout_sent_at;
    }
}

/* idle: member 0 says a probe line when one is due (one in flight at a time) */
static void probe_tick(uint64_t t)
{
    if (mode != MODE_IDLE || probe_ms <= 0 || (phase != PH_LOGIN && phase != PH_SETTLE) ||
        !conns[0].ready || conns[0].dead || probe_inflight || t < probe_next_at)
        return;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "probe %llu\n", (unsigned long long)t);
    probe_inflight = 1;
    probe_sent_at = t;
    probe_next_at = t + (uint64_t)(probe_ms * 1000);
    send_lines(&conns[0], buf, (size_t)n);
}

static void say_fanout(uint64_t t)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "fanout %d %llu\n", fanout_sent, (unsigned long long)t);
    fanout_sent++;
    fanout_seen = 0;
    fanout_sent_at = t;
    send_lines(&conns[0], buf, (size_t)n);
}

static void on_line(struct conn *c, const char *line, size_t len)
{
    if (len && line[len - 1] == '\r')
        len--;
    if (mode == MODE_ECHO) {
        if (len + 1 != (size_t)line_size)
            errors++;
        uint64_t t = batch_now;
        if (!c->ready) {
            c->ready = 1;
            ready_count++;
        }
        if (phase == PH_MEASURE && t < measure_end) {
            echo_measured++;
            hist_add(t - c->sent_at);
        }
        if (phase < PH_DRAIN)
            send_request(c);
        return;
    }
    if (len > 1 && line[0] == 'm' && line[1] >= '0' && line[1] <= '9') {
        if (ends_with(line, len, " has joined the chat.")) {
            joins_seen++;
            return;
        }
        if (c->expect)
            on_says(c, line, len);
        else if (mode == MODE_IDLE)
            on_idle_says(c, line, len);
        return;
    }
    if (starts_with(line, len, "What is your handle?")) {
        if (c->idx >= handles_sent)
            prompted++;
        else /* asked again: the handle was refused */
            fail("the server asked for a handle twice");
    } else if (starts_with(line, len, "Online (")) {
        if (!c->ready) {
            c->ready = 1;
            ready_count++;
        }
    } else if (starts_with(line, len, "That handle is already taken") ||
               starts_with(line, len, "Invalid handle") ||
               starts_with(line, len, "Server is full")) {
        fprintf(stderr, "loadgen: member %d: %.*s\n", c->idx, (int)len, line);
        fail("the server refused a login");
    }
}

static char rbuf[READ_CHUNK];

/* Append payload bytes to the line being built (its start, up to PART_MAX). */
static void part_add(struct conn *c, const char *p, size_t take)
{
    if (c->partlen + take > PART_MAX)
        take = PART_MAX > c->partlen ? PART_MAX - c->partlen : 0;
    memcpy(c->part + c->partlen, p, take);
    c->partlen += take;
}

/* --ws: the 101 answer's head, then server frames (unmasked): each text frame
 * is one line; other frames are skipped (a close frame is followed by EOF). */
static void ws_feed(struct conn *c, const char *p, const char *end)
{
    while (p < end && !c->ws_open) {
        static const char crlf2[] = "\r\n\r\n";
        if (c->partlen < 12)
            c->part[c->partlen++] = *p;   /* "HTTP/1.1 101" */
        c->ws_crlf = *p == crlf2[c->ws_crlf] ? c->ws_crlf + 1 : (*p == '\r' ? 1 : 0);
        p++;
        if (c->ws_crlf == 4) {
            if (c->partlen < 12 || memcmp(c->part + 9, "101", 3) != 0)
                fail("the WebSocket upgrade was refused");
            c->ws_open = 1;
            c->partlen = 0;
        }
    }
    while (p < end) {
        if (c->ws_left == 0 && c->ws_hdrlen < 14) {   /* a frame header */
            c->ws_hdr[c->ws_hdrlen++] = (unsigned char)*p++;
            if (c->ws_hdrlen < 2)
                continue;
            unsigned len7 = c->ws_hdr[1] & 0x7f;
            size_t need = len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
            if (c->ws_hdrlen < need)
                continue;
            uint64_t len = len7;
            if (len7 == 126)
                len = ((uint64_t)c->ws_hdr[2] << 8) | c->ws_hdr[3];
            else if (len7 == 127)
                for (int i = 2; i < 10; i++)
                    len = (len << 8) | c->ws_hdr[i];
            unsigned opcode = c->ws_hdr[0] & 0x0f;
            c->ws_text = opcode == 1 || (opcode == 0 && c->ws_text);
            c->ws_hdrlen = 0;
            c->ws_left = len;
            if (len == 0 && c->ws_text && (c->ws_hdr[0] & 0x80)) {
                on_line(c, c->part, c->partlen);
                c->partlen = 0;
            }
            continue;
        }
        size_t avail = (size_t)(end - p);
        size_t take = avail < c->ws_left ? avail : (size_t)c->ws_left;
        int fin = (c->ws_hdr[0] & 0x80) != 0;
        c->ws_left -= take;
        if (c->ws_text) {
            if (c->ws_left == 0 && fin && c->partlen == 0)
                on_line(c, p, take);          /* the usual case: a whole line here */
            else {
                part_add(c, p, take);
                if (c->ws_left == 0 && fin) {
                    on_line(c, c->part, c->partlen);
                    c->partlen = 0;
                }
            }
        }
        p += take;
    }
}

static void on_readable(struct conn *c)
{
    for (int rounds = 0; rounds < 4 && !c->dead; rounds++) {
        ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_dead(c);
            return;
        }
        if (n < 0)
            return;
        batch_now = now_us();
        const char *p = rbuf, *end = rbuf + n;
        if (ws_path) {
            ws_feed(c, p, end);
            if ((size_t)n < sizeof rbuf)
                break;
            continue;
        }
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl) { /* keep the start of the incomplete line */
                size_t take = (size_t)(end - p);
                if (c->partlen + take > PART_MAX)
                    take = PART_MAX > c->partlen ? PART_MAX - c->partlen : 0;
                memcpy(c->part + c->partlen, p, take);
                c->partlen += take;
                break;
            }
            if (c->partlen) {
                size_t take = (size_t)(nl - p);
                if (c->partlen + take > PART_MAX)
                    take = PART_MAX - c->partlen;
                memcpy(c->part + c->partlen, p, take);
                on_line(c, c->part, c->partlen + take);
                c->partlen = 0;
            } else {
                on_line(c, p, (size_t)(nl - p));
            }
            p = nl + 1;
        }
        if ((size_t)n < sizeof rbuf)
            break;
    }
    if (mode == MODE_CHAT && c->idx < senders && sending())
        top_up(c);
}

/* ---- phases ---- */
static void enter(enum phase p, double seconds)
{
    phase = p;
    phase_deadline = seconds > 0 ? now_us() + (uint64_t)(seconds * 1e6) : 0;
}

static void start_sending(void)
{
    for (int i = 0; i < members; i++) {
        conns[i].expect = calloc((size_t)senders, sizeof(uint32_t));
        if (!conns[i].expect)
            die("calloc");
    }
    enter(PH_WARMUP, warmup_s);
    for (int i = 0; i < senders && i < members; i++)
        top_up(&conns[i]);
}

static uint64_t total_sent(void)
{
    uint64_t n = 0;
    for (int i = 0; i < senders && i < members; i++)
        n += conns[i].next_seq;
    return n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report_chat(void)
{
    uint64_t missing = 0;
    for (int r = 0; r < members; r++)
        for (int s = 0; s < senders && s < members; s++)
            if (conns[s].next_seq > conns[r].expect[s])
                missing += conns[s].next_seq - conns[r].expect[s];
    /* every member must have seen one and the same order: count the odd ones out */
    uint64_t *h = malloc(sizeof(uint64_t) * (size_t)members);
    for (int r = 0; r < members; r++)
        h[r] = conns[r].order_hash;
    qsort(h, (size_t)members, sizeof *h, cmp_u64);
    int best = 0;
    for (int i = 0, j; i < members; i = j) {
        for (j = i; j < members && h[j] == h[i]; j++)
            ;
        if (j - i > best)
            best = j - i;
    }
    free(h);
    double secs = (double)(measure_end - measure_start) / 1e6;
    printf("{\"mode\": \"chat\", \"members\": %d, \"senders\": %d, \"window\": %d, "
           "\"seconds\": %.3f, \"delivered\": %llu, \"lines_s\": %.1f, "
           "\"p50_us\": %.1f, \"p99_us\": %.1f, \"sent\": %llu, \"received\": %llu, "
           "\"lost\": %llu, \"misordered\": %llu, \"order_mismatch_members\": %d, "
           "\"disconnected\": %d, \"login_s\": %.3f, \"server_cpu\": %.3f, "
           "\"client_cpu\": %.3f}\n",
           members, senders, window_size, secs, (unsigned long long)says_measured,
           (double)says_measured / secs, hist_percentile(0.50), hist_percentile(0.99),
           (unsigned long long)total_sent(), (unsigned long long)says_total,
           (unsigned long long)(lost_gaps + missing),
           (unsigned long long)(inversions + (uint64_t)(members - best)), members - best,
           dead_count, (double)(t_login_done - t_start) / 1e6, server_cpu_share,
           client_cpu_share);
}

static void report_echo(void)
{
    double secs = (double)(measure_end - measure_start) / 1e6;
    printf("{\"mode\": \"echo\", \"conns\": %d, \"size\": %d, \"seconds\": %.3f, "
           "\"requests\": %llu, \"req_s\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
           "\"errors\": %llu, \"disconnected\": %d, \"server_cpu\": %.3f, \"client_cpu\": %.3f}\n",
           nconns, line_size, secs, (unsigned long long)echo_measured,
           (double)echo_measured / secs, hist_percentile(0.50), hist_percentile(0.99),
           (unsigned long long)errors, dead_count, server_cpu_share, client_cpu_share);
}

static void report_idle(uint64_t t)
{
    uint64_t all[64];
    int n = fanout_sent;
    memcpy(all, fanout_all, sizeof(uint64_t) * (size_t)n);
    qsort(all, (size_t)n, sizeof all[0], cmp_u64);
    printf("{\"ready\": true, \"members\": %d, \"login_s\": %.3f, \"settle_s\": %.3f, "
           "\"probe_n\": %llu, \"probe_p50_us\": %.1f, \"probe_p99_us\": %.1f, "
           "\"fanout_lines\": %d, \"fanout_p50_us\": %.1f, \"fanout_p99_us\": %.1f, "
           "\"fanout_all_us\": %.1f, \"fanout_missing\": %llu, \"fanout_s\": %.3f, "
           "\"disconnected\": %d}\n",
           members, (double)(t_login_done - t_start) / 1e6,
           (double)(t_settled - t_login_done) / 1e6, (unsigned long long)probe_lat.n,
           hist_percentile_of(&probe_lat, 0.50), hist_percentile_of(&probe_lat, 0.99), n,
           hist_percentile(0.50), hist_percentile(0.99), n ? (double)all[n / 2] : -1.0,
           (unsigned long long)fanout_missing, (double)(t - t_settled) / 1e6, dead_count);
    fflush(stdout);
}

/* Moves to the next phase when this one is over; returns 0 when the run is done. */
static int advance(uint64_t t)
{
    switch (phase) {
    case PH_LOGIN:
        if (ready_count < total_conns())
            return 1;
        t_login_done = t;
        if (mode == MODE_ECHO) {
            enter(PH_WARMUP, warmup_s);
            return 1;
        }
        enter(PH_SETTLE, 0);
        /* fall through */
    case PH_SETTLE:
        if (joins_seen < joins_expected)
            return 1;
        if (mode == MODE_IDLE) {
            t_settled = t;
            enter(PH_FANOUT, 0);
            if (fanout_lines > 0) {
                enter(PH_FANOUT, 10.0);
                say_fanout(t);
                return 1;
            }
            /* fall through: no fan-out lines */
        } else {
            start_sending();
            return 1;
        }
        /* fall through */
    case PH_FANOUT:
        if (fanout_sent > 0) {
            if (fanout_seen < members - dead_count && t < phase_deadline)
                return 1;
            if (fanout_seen < members - dead_count) { /* 10 s: count it as that */
                fanout_missing += (uint64_t)(members - dead_count - fanout_seen);
                fanout_all[fanout_sent - 1] = t - fanout_sent_at;
            }
            if (fanout_sent < fanout_lines) {
                enter(PH_FANOUT, 10.0);
                say_fanout(t);
                return 1;
            }
        }
        report_idle(t);
        enter(PH_HOLD, hold_s);
        return 1;
    case PH_WARMUP:
        if (t < phase_deadline)
            return 1;
        measure_start = t;
        measure_end = t + (uint64_t)(duration_s * 1e6);
        cpu_mark_start();
        enter(PH_MEASURE, duration_s);
        return 1;
    case PH_MEASURE:
        if (t < phase_deadline)
            return 1;
        measure_end = t;
        cpu_mark_end((double)(measure_end - measure_start) / 1e6);
        enter(PH_DRAIN, mode == MODE_ECHO ? 0.2 : drain_s);
        return 1;
    case PH_DRAIN:
        if (mode == MODE_CHAT &&
            says_total < total_sent() * (uint64_t)(members - dead_count) && t < phase_deadline)
            return 1;
        if (mode == MODE_ECHO && t < phase_deadline)
            return 1;
        return 0;
    case PH_HOLD:
        return !stop_requested && t < phase_deadline;
    case PH_DONE:
        return 0;
    }
    return 0;
}

static double arg_num(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "loadgen: %s needs a value\n", argv[*i]);
        exit(64);
    }
    return atof(argv[++*i]);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: loadgen echo|chat|idle --port P [options]\n");
        return 64;
    }
    if (!strcmp(argv[1], "echo"))
        mode = MODE_ECHO;
    else if (!strcmp(argv[1], "chat"))
        mode = MODE_CHAT;
    else if (!strcmp(argv[1], "idle"))
        mode = MODE_IDLE;
    else {
        fprintf(stderr, "loadgen: unknown mode %s\n", argv[1]);
        return 64;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--host") && i + 1 < argc) host = argv[++i];
        else if (!strcmp(a, "--port")) port = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--conns")) nconns = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--size")) line_size = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--members")) members = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--senders")) senders = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--window")) window_size = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--refill")) refill = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--ramp")) ramp = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--batch")) batch = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--spin")) spin = 1;
        else if (!strcmp(a, "--ws") && i + 1 < argc) ws_path = argv[++i];
        else if (!strcmp(a, "--server-pid")) server_pid = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--warmup")) warmup_s = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--duration")) duration_s = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--drain")) drain_s = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--hold")) hold_s = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--probe-ms")) probe_ms = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--fanout")) fanout_lines = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--timeout")) timeout_s = arg_num(argc, argv, &i);
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", a);
            return 64;
        }
    }
    if (port <= 0 || line_size < 2 || line_size > (int)sizeof request || ramp < 1 || batch < 1 ||
        members < 1 || nconns < 1 || senders < 0 || window_size < 1 || window_size > 32 || refill < 1 ||
        refill > window_size || fanout_lines < 0 || fanout_lines > 64 || probe_ms < 0) {
        fprintf(stderr, "loadgen: bad arguments\n");
        return 64;
    }
    if (senders > members)
        senders = members;
    memset(request, 'x', (size_t)line_size - 1);
    request[line_size - 1] = '\n';
    joins_expected = (uint64_t)members * (uint64_t)(members + 1) / 2;

    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    conns = calloc((size_t)total_conns(), sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || epfd < 0)
        die("setup");
    if (mode == MODE_IDLE) { /* stdin closing ends the hold */
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
    }

    t_start = now_us();
    uint64_t hard_deadline = t_start + (uint64_t)(timeout_s * 1e6);
    struct epoll_event events[MAX_EVENTS];
    open_more();
    for (;;) {
        uint64_t t = now_us();
        if (!advance(t))
            break;
        if (stop_requested && phase != PH_HOLD)
            fail("interrupted");
        if (t >= hard_deadline)
            fail("timed out");
        if (mode == MODE_ECHO && dead_count == nconns)
            fail("every connection was closed");
        uint64_t wake = hard_deadline;
        if (phase_deadline && phase_deadline < wake)
            wake = phase_deadline;
        if (mode == MODE_IDLE && probe_ms > 0 && phase <= PH_SETTLE && probe_next_at > t &&
            probe_next_at < wake)
            wake = probe_next_at;
        int wait_ms = wake > t ? (int)((wake - t + 999) / 1000) : 0;
        if (wait_ms > 100)
            wait_ms = 100;
        if (spin && phase != PH_HOLD)
            wait_ms = 0; /* busy-poll: this CPU is ours, and a wake-up costs more */
        int n = epoll_wait(epfd, events, MAX_EVENTS, wait_ms);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) { /* stdin */
                char b[256];
                if (read(0, b, sizeof b) <= 0) {
                    stop_requested = 1;
                    epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
                }
                continue;
            }
            if (c->dead)
                continue;
            if (!c->connected) {
                if (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    on_connected(c);
                continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(c);
            if (!c->dead && (events[i].events & EPOLLOUT))
                flush_out(c);
        }
        if (phase == PH_LOGIN)
            open_more();
        probe_tick(now_us());
    }
    if (mode == MODE_ECHO)
        report_echo();
    else if (mode == MODE_CHAT)
        report_chat();
    else
        printf("{\"done\": true, \"disconnected\": %d}\n", dead_count);
    fflush(stdout);
    return 0;
}
