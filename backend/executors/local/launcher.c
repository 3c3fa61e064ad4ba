/*
 * piston-launch: the few steps of the local sandbox that must happen in the
 * process itself, between exec calls, and that no packaged tool combines.
 *
 *   piston-launch outer [-c CGROUP_PROCS]... [-n NETNS_FD -N REFERENCE_DIR] [-u UID -g GID] -- ARGV...
 *       Joins the given cgroups (so nothing the program forks can escape them),
 *       joins the slot's network namespace if it is provably as new (no socket
 *       counted in sockstat, every counter in REFERENCE_DIR's copies unchanged), else makes a
 *       fresh one with only a loopback up; drops to an unprivileged uid/gid,
 *       then execs ARGV (bubblewrap, told to share this network namespace).
 *
 *   piston-launch netns
 *       Makes a network namespace with its loopback up, writes "1" to stdout and
 *       stays in it until stdin closes: the server opens /proc/PID/ns/net meanwhile
 *       and keeps that descriptor as the slot's namespace.
 *       Started as root by the web worker through a plain exec (vfork-able):
 *       no Python pre-exec hook in the server.
 *
 *   piston-launch inner -m META_FD -w CTRL_FD
 *       Runs inside the sandbox, started ahead of time so that sandbox set-up
 *       is off the request's path. Reads the job from CTRL_FD until EOF:
 *       NUL-separated "[-i STDIN_PATH] [-c CPU_MS] [-t WALL_MS] [-r NAME=SOFT:HARD]... -- ARGV...".
 *       Forks ARGV with the rlimits applied and waits for it, killing it at the
 *       CPU or wall-clock limit (checked every 10 ms; its exit is seen at once),
 *       then writes "status utime_us stime_us maxrss_kb wall_us killed" to
 *       META_FD, killed being 0, 1 (CPU limit) or 2 (wall clock).
 *       rusage is taken here because it does not cross bubblewrap's pid
 *       namespace and, read by the server, it would carry the server's own RSS.
 *
 *   piston-launch killall -u UID
 *       Kills every process of UID (kill(-1) as that uid): the last resort
 *       that also catches setsid() escapees when there is no pid namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ITEMS 16

static void die(const char *what) {
    fprintf(stderr, "piston-launch: %s: %s\n", what, strerror(errno));
    _exit(127);
}

static void usage(void) {
    fprintf(stderr, "usage: piston-launch outer|inner|killall|netns ...\n");
    _exit(126);
}

struct limit { int resource; rlim_t soft, hard; };

static const struct { const char *name; int resource; } NAMES[] = {
    {"CPU", RLIMIT_CPU}, {"FSIZE", RLIMIT_FSIZE}, {"DATA", RLIMIT_DATA},
    {"STACK", RLIMIT_STACK}, {"CORE", RLIMIT_CORE}, {"NOFILE", RLIMIT_NOFILE},
    {"NPROC", RLIMIT_NPROC}, {"AS", RLIMIT_AS}, {"MEMLOCK", RLIMIT_MEMLOCK},
};

static rlim_t parse_rlim(const char *s) {
    if (strcmp(s, "inf") == 0) return RLIM_INFINITY;
    return (rlim_t)strtoull(s, NULL, 10);
}

static struct limit parse_limit(const char *spec) {
    struct limit l = {-1, 0, 0};
    const char *eq = strchr(spec, '='), *colon = eq ? strchr(eq, ':') : NULL;
    if (!eq || !colon) usage();
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (strncmp(spec, NAMES[i].name, (size_t)(eq - spec)) == 0 && strlen(NAMES[i].name) == (size_t)(eq - spec))
            l.resource = NAMES[i].resource;
    if (l.resource < 0) usage();
    char buf[64];
    snprintf(buf, sizeof buf, "%.*s", (int)(colon - eq - 1), eq + 1);
    l.soft = parse_rlim(buf);
    l.hard = parse_rlim(colon + 1);
    return l;
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) die(path);
    if (write(fd, text, strlen(text)) < 0) die(path);
    close(fd);
}

static int loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
    return rc;
}

/* Interfaces other than lo in /proc/self/net/dev (two header lines, then one per interface). */
static int foreign_interfaces(void) {
    char line[512];
    FILE *f = fopen("/proc/self/net/dev", "re");
    if (!f) return 1;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strchr(line, '|')) continue;
        char *p = line;
        while (*p == ' ') p++;
        if (strncmp(p, "lo:", 3) != 0) n++;
    }
    fclose(f);
    return n;
}

/* Whether /proc/self/net/NAME (sockstat, sockstat6) counts nothing in this namespace: no
 * socket of any family ("sockets: used", in-flight and orphaned ones included), none in
 * TIME_WAIT, no fragment queue. alloc, orphan and mem are machine-wide, so they are skipped.
 * These counters are per namespace; walking /proc/net/tcp instead scans the machine-wide
 * connection hash, which cost more than the whole sandbox. */
static int sockstat_zero(const char *name) {
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/self/net/%s", name);
    FILE *f = fopen(path, "re");
    if (!f) return errno == ENOENT; /* no IPv6: nothing to count */
    int zero = 1;
    while (zero && fgets(line, sizeof line, f)) {
        char *save = NULL, *key = strtok_r(line, " \n", &save); /* the protocol, e.g. "TCP:" */
        while (zero && key && (key = strtok_r(NULL, " \n", &save))) {
            char *value = strtok_r(NULL, " \n", &save);
            if (!value) zero = 0;
            else if (strcmp(key, "alloc") && strcmp(key, "orphan") && strcmp(key, "mem") && strcmp(value, "0"))
                zero = 0;
        }
    }
    fclose(f);
    return zero;
}

#define MAX_NET_FILE 65536

/* Reads a whole file; -1 if it cannot be read or does not fit. */
static ssize_t slurp(const char *path, char *buf) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t len = 0, n;
    while ((n = read(fd, buf + len, MAX_NET_FILE - len)) > 0) len += n;
    close(fd);
    return n < 0 || len == MAX_NET_FILE ? -1 : len;
}

/* The counters a run moves even without a socket left (packets on lo, failed connects,
 * unreachable routes), as the server copied them from the namespace when it was new. */
static const char *COUNTERS[] = {"dev", "snmp", "snmp6", "netstat"};

static int counters_unchanged(const char *reference_dir) {
    static char want[MAX_NET_FILE], got[MAX_NET_FILE];
    char path[4096];
    for (size_t i = 0; i < sizeof COUNTERS / sizeof COUNTERS[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", reference_dir, COUNTERS[i]);
        ssize_t a = slurp(path, want);
        snprintf(path, sizeof path, "/proc/self/net/%s", COUNTERS[i]);
        ssize_t b = slurp(path, got);
        if (a < 0 || a != b || memcmp(want, got, (size_t)a) != 0) return 0;
    }
    return 1;
}

static int net_is_new(const char *reference_dir) {
    return sockstat_zero("sockstat") && sockstat_zero("sockstat6") && foreign_interfaces() == 0 &&
           counters_unchanged(reference_dir);
}

static int netns(void) {
    if (unshare(CLONE_NEWNET) < 0) die("unshare");
    if (loopback_up() < 0) die("loopback");
    if (write(1, "1", 1) != 1) die("write");
    char c;
    while (read(0, &c, 1) > 0) {}
    return 0;
}

static int outer(int argc, char **argv) {
    const char *cgroups[MAX_ITEMS];
    int ncg = 0, opt, net_fd = -1;
    const char *net_reference = NULL;
    long uid = -1, gid = -1;
    while ((opt = getopt(argc, argv, "+c:n:N:u:g:")) != -1) {
        if (opt == 'c' && ncg < MAX_ITEMS) cgroups[ncg++] = optarg;
        else if (opt == 'n') net_fd = atoi(optarg);
        else if (opt == 'N') net_reference = optarg;
        else if (opt == 'u') uid = atol(optarg);
        else if (opt == 'g') gid = atol(optarg);
        else usage();
    }
    if (optind >= argc) usage();
    char pid[32];
    snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    for (int i = 0; i < ncg; i++) write_file(cgroups[i], pid);
    if (net_fd >= 0 && net_reference) {
        /* Reusing the slot's namespace saves creating and tearing one down per stage, but
         * only when nothing of an earlier run is left in it; otherwise a fresh one. */
        if (setns(net_fd, CLONE_NEWNET) < 0) die("setns");
        close(net_fd);
        if (!net_is_new(net_reference)) {
            if (unshare(CLONE_NEWNET) < 0) die("unshare");
            if (loopback_up() < 0) die("loopback");
        }
    }
    if (gid >= 0) {
        if (setgroups(0, NULL) < 0) die("setgroups");
        if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0) die("setresgid");
    }
    if (uid >= 0 && setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) die("setresuid");
    execv(argv[optind], argv + optind);
    die(argv[optind]);
    return 127;
}

/* CPU time of the process and of the children it has reaped, from /proc (clock ticks). */
static long long cpu_used_ms(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    unsigned long long utime = 0, stime = 0;
    long long cutime = 0, cstime = 0;
    /* after ") ": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
               &utime, &stime, &cutime, &cstime) != 4) return 0;
    long hz = sysconf(_SC_CLK_TCK);
    return (long long)(utime + stime + (unsigned long long)cutime + (unsigned long long)cstime) * 1000 / hz;
}

/* As the pid namespace's init (bwrap --as-pid-1) we inherit the program's orphans; reap
 * those that died so their zombies do not count against the process limit. The program
 * itself is left for wait4, which also takes its rusage. */
static void reap_orphans(pid_t child) {
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0 || si.si_pid == child) return;
        waitpid(si.si_pid, NULL, WNOHANG);
    }
}

static long long usec(struct timeval tv) { return (long long)tv.tv_sec * 1000000 + tv.tv_usec; }

#define MAX_JOB (1 << 20)
#define MAX_ARGS 4096

/* Reads the NUL-separated job from fd into a fresh argv (argv[0] is a dummy). */
static char **read_job(int fd, int *argc_out) {
    char *buf = malloc(MAX_JOB + 1);
    size_t len = 0;
    ssize_t n;
    if (!buf) die("malloc");
    while ((n = read(fd, buf + len, MAX_JOB - len)) != 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("read job");
        len += (size_t)n;
        if (len == MAX_JOB) { errno = E2BIG; die("job"); }
    }
    close(fd);
    if (len == 0) _exit(0); /* the server discarded this sandbox unused */
    buf[len] = '\0';
    static char *args[MAX_ARGS + 2];
    int argc = 0;
    args[argc++] = "job";
    for (size_t i = 0; i < len && argc < MAX_ARGS; i += strlen(buf + i) + 1) args[argc++] = buf + i;
    args[argc] = NULL;
    *argc_out = argc;
    return args;
}

static int inner(int argc, char **argv) {
    struct limit limits[MAX_ITEMS];
    int nlim = 0, meta = -1, ctrl = -1, opt;
    const char *stdin_path = NULL;
    long cpu_ms = 0, wall_ms = 0;
    while ((opt = getopt(argc, argv, "+m:w:")) != -1) {
        if (opt == 'm') meta = atoi(optarg);
        else if (opt == 'w') ctrl = atoi(optarg);
        else usage();
    }
    if (meta < 0 || ctrl < 0) usage();
    fcntl(meta, F_SETFD, FD_CLOEXEC);
    argv = read_job(ctrl, &argc);
    optind = 1;
    while ((opt = getopt(argc, argv, "+i:c:t:r:")) != -1) {
        if (opt == 'i') stdin_path = optarg;
        else if (opt == 'c') cpu_ms = atol(optarg);
        else if (opt == 't') wall_ms = atol(optarg);
        else if (opt == 'r' && nlim < MAX_ITEMS) limits[nlim++] = parse_limit(optarg);
        else usage();
    }
    if (optind >= argc) usage();
    /* The program runs as our uid: keep it from ptracing us or reading our fds. */
    prctl(PR_SET_DUMPABLE, 0);
    struct timespec start, end;
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    clock_gettime(CLOCK_MONOTONIC, &start);
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        signal(SIGPIPE, SIG_DFL);
        sigprocmask(SIG_UNBLOCK, &chld, NULL);
        if (stdin_path) {
            int in = open(stdin_path, O_RDONLY);
            if (in < 0 || dup2(in, 0) < 0) die(stdin_path);
            close(in);
        }
        for (int i = 0; i < nlim; i++) {
            struct rlimit rl = {limits[i].soft, limits[i].hard};
            if (setrlimit(limits[i].resource, &rl) < 0) die("setrlimit");
        }
        /* What the program creates is its own uid's alone: where /tmp is shared (uid mode, without
           namespaces), another submission running at the same moment cannot read it. */
        umask(077);
        execv(argv[optind], argv + optind);
        die(argv[optind]);
    }
    int status = 0, killed = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    const struct timespec tick = {0, 10 * 1000 * 1000};
    for (;;) {
        pid_t done = wait4(child, &status, WNOHANG, &ru);
        if (done == child) break;
        if (done < 0 && errno != EINTR) die("wait4");
        if (!killed) {
            clock_gettime(CLOCK_MONOTONIC, &end);
            long long elapsed_ms = (end.tv_sec - start.tv_sec) * 1000LL + (end.tv_nsec - start.tv_nsec) / 1000000;
            if (wall_ms > 0 && elapsed_ms >= wall_ms) killed = 2;
            else if (cpu_ms > 0 && cpu_used_ms(child) >= cpu_ms) killed = 1;
            if (killed) kill(child, SIGKILL);
        }
        reap_orphans(child);
        sigtimedwait(&chld, NULL, &tick); /* returns at once when the child exits */
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    long long wall = (end.tv_sec - start.tv_sec) * 1000000LL + (end.tv_nsec - start.tv_nsec) / 1000;
    dprintf(meta, "%d %lld %lld %ld %lld %d\n", status, usec(ru.ru_utime), usec(ru.ru_stime), ru.ru_maxrss, wall,
            killed);
    close(meta);
    return 0;
}

static int killall(int argc, char **argv) {
    long uid = -1;
    int opt;
    while ((opt = getopt(argc, argv, "u:")) != -1) {
        if (opt == 'u') uid = atol(optarg);
        else usage();
    }
    if (uid <= 0) usage();
    if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) die("setresuid");
    /* kill(-1) skips the caller; repeat until no process of the uid is left. */
    for (int i = 0; i < 50 && kill(-1, SIGKILL) == 0; i++) usleep(2000);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    if (strcmp(argv[1], "outer") == 0) return outer(argc - 1, argv + 1);
    if (strcmp(argv[1], "inner") == 0) return inner(argc - 1, argv + 1);
    if (strcmp(argv[1], "killall") == 0) return killall(argc - 1, argv + 1);
    if (strcmp(argv[1], "netns") == 0) return netns();
    usage();
    return 126;
}
