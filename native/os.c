/* os.c - the only file that calls the operating system.  Calls that can fail in ways a test
 * must provoke (ENOSPC, EIO, a crash between two syncs) go through os_vt, a table of
 * function pointers that a test build can replace (SQLite's os_unix.c idea).  Linux only:
 * OFD locks, fallocate, /proc boot id.  Every function returns 0 or -errno.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- fault injection: mmkv_debug_fail ---------------------------------------------------
 *
 * Tests make the nth upcoming call of one system call fail, to drive the write path through
 * ENOSPC, EIO or EINTR at every step (SQLite's idea).  The check sits where the system call
 * is made, inside each function's own EINTR loop, so an injected EINTR is retried exactly as
 * a real one would be and an injected ENOSPC travels the real error path.  Unarmed, it costs
 * one relaxed atomic load per system call. */

enum {
    FAULT_OPEN, FAULT_CLOSE, FAULT_FSTAT, FAULT_FALLOCATE, FAULT_FTRUNCATE, FAULT_FDATASYNC,
    FAULT_PWRITE, FAULT_RENAME, FAULT_UNLINK, FAULT_FSYNC_DIR, FAULT_STAT_INO, FAULT_FCHMOD,
    FAULT_SEEK_DATA, FAULT_SEEK_HOLE, FAULT_COUNT
};

static const char *const fault_names[FAULT_COUNT] = {
    "open", "close", "fstat", "fallocate", "ftruncate", "fdatasync", "pwrite", "rename",
    "unlink", "fsync_dir", "stat_ino", "fchmod", "seek_data", "seek_hole",
};

static _Atomic uint64_t fault_left[FAULT_COUNT];   /* calls to go before the failing one */
static _Atomic int fault_err[FAULT_COUNT];
static _Atomic int fault_armed;

/* 1 (errno set) if this call must fail, else 0: go on with the real system call. */
static int fault_hit(int which)
{
    if (!atomic_load_explicit(&fault_armed, memory_order_relaxed))
        return 0;
    uint64_t left = atomic_load(&fault_left[which]);
    while (left) {
        if (atomic_compare_exchange_weak(&fault_left[which], &left, left - 1)) {
            if (left != 1)
                return 0;
            errno = atomic_load(&fault_err[which]);
            return 1;
        }
    }
    return 0;
}

/* A system call expression, or -1 with errno when a test armed a fault for it. */
#define OS_CALL(which, call) (fault_hit(which) ? -1 : (call))

static int os_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return -1;
    rl.rlim_cur = rl.rlim_max;
    return setrlimit(RLIMIT_NOFILE, &rl) < 0 ? -1 : 0;
}

/* O_NONBLOCK: a FIFO or a device at the path must not block the open (fstat then refuses
 * anything but a regular file); it changes nothing for regular files. */
static int os_open_impl(const char *path, int flags, unsigned mode)
{
    int fd, raised = 0;
    for (;;) {
        fd = OS_CALL(FAULT_OPEN, open(path, flags | O_CLOEXEC | O_NONBLOCK, (mode_t)mode));
        if (fd >= 0)
            break;
        if (errno == EINTR)
            continue;
        /* a process holding thousands of stores may pass the soft descriptor limit: lift it
         * to the hard limit once, as a server would at start */
        if (errno == EMFILE && !raised++ && os_raise_nofile() == 0)
            continue;
        break;
    }
    return fd < 0 ? -errno : fd;
}

static int os_close_impl(int fd)
{
    return OS_CALL(FAULT_CLOSE, close(fd)) < 0 ? -errno : 0;
}

static int os_fstat_impl(int fd, uint64_t *size, uint64_t *dev, uint64_t *ino)
{
    struct stat st;
    if (OS_CALL(FAULT_FSTAT, fstat(fd, &st)) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    *size = (uint64_t)st.st_size;
    *dev = (uint64_t)st.st_dev;
    *ino = (uint64_t)st.st_ino;
    return 0;
}

/* Allocate real blocks so that a full disk is ENOSPC here and never SIGBUS on a later
 * store through the mapping.  fallocate(2) directly: glibc's posix_fallocate emulation is
 * not safe against concurrent writers. */
static int os_fallocate_impl(int fd, uint64_t off, uint64_t len)
{
    int rc;
    wait_begin();
    do
        rc = OS_CALL(FAULT_FALLOCATE, fallocate(fd, 0, (off_t)off, (off_t)len));
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno == EOPNOTSUPP)
        rc = -posix_fallocate(fd, (off_t)off, (off_t)len);
    else if (rc < 0)
        rc = -errno;
    wait_end();
    return rc;
}

static int os_ftruncate_impl(int fd, uint64_t len)
{
    int rc;
    do
        rc = OS_CALL(FAULT_FTRUNCATE, ftruncate(fd, (off_t)len));
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

/* After an fsync error the kernel may have dropped the dirty pages (fsyncgate): the caller
 * treats any error as a lost durability point and reports it. */
static _Atomic uint64_t os_sync_count;

static int os_fdatasync_impl(int fd)
{
    atomic_fetch_add(&os_sync_count, 1);
    wait_begin();
    int rc;
    do
        rc = OS_CALL(FAULT_FDATASYNC, fdatasync(fd));
    while (rc < 0 && errno == EINTR);
    rc = rc < 0 ? -errno : 0;
    wait_end();
    return rc;
}

uint64_t mmkv_debug_sync_count(void)
{
    return atomic_load(&os_sync_count);
}

static int os_pwrite_impl(int fd, const void *buf, size_t len, uint64_t off)
{
    const char *p = buf;
    while (len) {
        ssize_t n = OS_CALL(FAULT_PWRITE, pwrite(fd, p, len, (off_t)off));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int os_rename_impl(const char *from, const char *to)
{
    int rc;
    do
        rc = OS_CALL(FAULT_RENAME, rename(from, to));
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

static int os_unlink_impl(const char *path)
{
    int rc;
    do
        rc = OS_CALL(FAULT_UNLINK, unlink(path));
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

/* fsync the directory holding path, so that a rename into it survives a power loss. */
static int os_fsync_dir_impl(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir))
            return -ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    wait_begin();
    int rc;
    do
        rc = OS_CALL(FAULT_FSYNC_DIR, fsync(fd));
    while (rc < 0 && errno == EINTR);
    rc = rc < 0 ? -errno : 0;
    wait_end();
    close(fd);
    return rc == -EINVAL ? 0 : rc;
}

static int os_stat_ino_impl(const char *path, uint64_t *dev, uint64_t *ino)
{
    struct stat st;
    int rc;
    do
        rc = OS_CALL(FAULT_STAT_INO, stat(path, &st));
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return -errno;
    *dev = (uint64_t)st.st_dev;
    *ino = (uint64_t)st.st_ino;
    return 0;
}

/* Give to_fd the permission bits of from_fd (a compacted file keeps the store's mode). */
static int os_fchmod_like_impl(int from_fd, int to_fd)
{
    struct stat st;
    if (fstat(from_fd, &st) < 0)
        return -errno;
    int rc;
    do
        rc = OS_CALL(FAULT_FCHMOD, fchmod(to_fd, st.st_mode & 07777));
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

static int os_seek_impl(int fd, uint64_t off, uint64_t *out, int whence)
{
    off_t r = OS_CALL(whence == SEEK_DATA ? FAULT_SEEK_DATA : FAULT_SEEK_HOLE,
                      lseek(fd, (off_t)off, whence));
    if (r < 0)
        return -errno;
    *out = (uint64_t)r;
    return 0;
}

static int os_seek_data_impl(int fd, uint64_t off, uint64_t *out)
{
    return os_seek_impl(fd, off, out, SEEK_DATA);
}

static int os_seek_hole_impl(int fd, uint64_t off, uint64_t *out)
{
    return os_seek_impl(fd, off, out, SEEK_HOLE);
}

/* Test hooks, kept out of the layers above: MMKV_TEST_<name> set turns a negative control
 * on (a scan that skips CRCs, to show the tests would notice); MMKV_TEST_COMPACT_KILL=N
 * makes the compactor SIGKILL itself at its step N, so a test sees what each step leaves;
 * MMKV_TEST_WRITE_KILL=N[:commit] kills the Nth record write inside its intent. */
static int os_test_flag_impl(const char *name)
{
    char var[64];
    snprintf(var, sizeof(var), "MMKV_TEST_%s", name);
    return getenv(var) != NULL;
}

int os_write_kill_armed;
static long os_write_kill_at, os_writes_seen;
static int os_write_kill_step;

__attribute__((constructor)) static void os_test_init(void)
{
    const char *env = getenv("MMKV_TEST_WRITE_KILL");
    os_write_kill_at = env ? atol(env) : 0;
    os_write_kill_step = env && strstr(env, ":commit") ? 1 : 0;
    os_write_kill_armed = os_write_kill_at > 0;
}

/* MMKV_TEST_WRITE_KILL=N: the Nth record write of the process dies between RESERVE and
 * COMMIT (step 0); N:commit: just after its COMMIT intent is stored (step 1), before it is
 * applied.  A test then gets that pending intent every time, not by luck of timing. */
static void os_crash_point_impl(const char *site, int step)
{
    if (strcmp(site, "write") == 0) {
        if (step == 0)
            os_writes_seen++;
        if (os_writes_seen == os_write_kill_at && step == os_write_kill_step)
            kill(getpid(), SIGKILL);
        return;
    }
    if (strcmp(site, "compact") != 0)
        return;
    const char *env = getenv("MMKV_TEST_COMPACT_KILL");
    if (env && atoi(env) == step)
        kill(getpid(), SIGKILL);
}

struct os_vtable os_vt = {
    os_open_impl, os_close_impl, os_fstat_impl, os_fallocate_impl, os_ftruncate_impl,
    os_fdatasync_impl, os_pwrite_impl, os_rename_impl, os_unlink_impl, os_fsync_dir_impl,
    os_stat_ino_impl, os_fchmod_like_impl, os_seek_data_impl, os_seek_hole_impl,
    os_test_flag_impl, os_crash_point_impl,
};

/* Open file description locks: owned by the open file, not the process, so closing another
 * descriptor of the same file does not drop them (the classic POSIX-lock pitfall). */
int os_ofd_lock(int fd, int type, uint64_t start, int wait)
{
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = (short)type;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)start;
    fl.l_len = 1;
    int rc;
    if (wait)
        wait_begin();
    do
        rc = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
    while (rc < 0 && errno == EINTR);
    if (wait)
        wait_end();
    if (rc == 0)
        return 0;
    return (errno == EACCES || errno == EAGAIN) ? -EAGAIN : -errno;
}

void *os_reserve(size_t len)
{
    void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int os_map_fixed(void *addr, size_t len, int fd, uint64_t off, int writable)
{
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void *p = mmap(addr, len, prot, MAP_SHARED | MAP_FIXED, fd, (off_t)off);
    return p == MAP_FAILED ? -errno : 0;
}

void *os_map(size_t len, int fd, uint64_t off, int writable)
{
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void *p = mmap(NULL, len, prot, MAP_SHARED, fd, (off_t)off);
    return p == MAP_FAILED ? NULL : p;
}

void os_unmap(void *addr, size_t len)
{
    if (addr)
        munmap(addr, len);
}

/* The boot id tells a process crash (same boot: the page cache survived) from a possible
 * power loss.  MMKV_TEST_BOOT_ID overrides it so tests can simulate a reboot. */
void os_boot_id(uint8_t out[16])
{
    char text[64] = {0};
    const char *env = getenv("MMKV_TEST_BOOT_ID");
    memset(out, 0, 16);
    if (env) {
        strncpy(text, env, sizeof(text) - 1);
    } else {
        FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
        if (!f)
            return;
        if (!fgets(text, sizeof(text), f))
            text[0] = 0;
        fclose(f);
    }
    int n = 0;
    for (const char *p = text; *p && n < 32; p++) {
        int d;
        if (*p >= '0' && *p <= '9') d = *p - '0';
        else if (*p >= 'a' && *p <= 'f') d = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F') d = *p - 'A' + 10;
        else continue;
        out[n / 2] |= (uint8_t)(d << ((n & 1) ? 0 : 4));
        n++;
    }
}

void os_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = getrandom(p, len, 0);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            /* no entropy source: fall back to time and address bits (never fails) */
            uint64_t t = os_now_ns() ^ (uint64_t)(uintptr_t)p;
            for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)((t >> ((i % 8) * 8)) ^ (i * 131));
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

uint64_t os_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* POSIX shared memory lives in /dev/shm on Linux (glibc's shm_open does the same open);
 * using the path directly lets the store share one code path with files.  Tests may point
 * MMKV_TEST_SHM_DIR at a small tmpfs of their own to fill it. */
int os_shm_path(const char *name, char *out, size_t cap)
{
    const char *dir = getenv("MMKV_TEST_SHM_DIR");
    if (name[0] == '/')
        name++;
    size_t n = strlen(name);
    if (n == 0 || n > 200 || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return MMKV_EINVAL;
    if ((size_t)snprintf(out, cap, "%s/%s", dir ? dir : "/dev/shm", name) >= cap)
        return MMKV_EINVAL;
    return 0;
}

/* Read exactly len bytes at off: 0, MMKV_ENOTSTORE when the file is shorter, or -errno. */
int os_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    ssize_t n;
    do
        n = pread(fd, buf, len, (off_t)off);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : MMKV_ENOTSTORE;
}

/* A new open file description of the file behind fd (fork: the child's own OFD locks). */
int os_reopen(int fd, int readonly)
{
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    return os_vt.open(proc, readonly ? O_RDONLY : O_RDWR, 0);
}

/* Make descriptor number `target` refer to what fd refers to. */
int os_replace_fd(int fd, int target)
{
    return dup3(fd, target, O_CLOEXEC) < 0 ? -errno : 0;
}

/* The robust mutex, waited for in slices: 0, ETIMEDOUT after the slice, or another error
 * of pthread_mutex_clocklock (EOWNERDEAD, ENOTRECOVERABLE). */
int os_mutex_wait(pthread_mutex_t *m, uint64_t slice_ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + slice_ns;
    ts.tv_sec += (time_t)(ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    int rc;
    do
        rc = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
    while (rc == EINTR);
    return rc;
}

/* Sleep briefly (close waiting for calls in progress on other threads). */
void os_pause(void)
{
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
}

/* The identity of the calling thread across PID namespaces: the inode of the PID namespace
 * it lives in, and its thread id there. */
static _Atomic uint64_t os_pidns;
static __thread uint64_t os_tid;

void os_thread_identity(uint64_t *ns_ino, uint64_t *tid)
{
    uint64_t v = atomic_load(&os_pidns);
    if (!v) {
        struct stat st;
        v = stat("/proc/self/ns/pid", &st) == 0 ? (uint64_t)st.st_ino : 1;
        atomic_store(&os_pidns, v);
    }
    if (!os_tid)
        os_tid = (uint64_t)gettid();
    *ns_ino = v;
    *tid = os_tid;
}

/* In a fork child: the forking thread has a new tid (and may be in a new namespace). */
void os_after_fork_child(void)
{
    os_tid = 0;
    atomic_store(&os_pidns, 0);
}

int mmkv_debug_fail(const char *call, uint64_t nth, int err)
{
    if (nth == 0) {
        for (int i = 0; i < FAULT_COUNT; i++)
            atomic_store(&fault_left[i], 0);
        return 0;
    }
    if (err <= 0)
        return MMKV_EINVAL;
    for (int i = 0; i < FAULT_COUNT; i++) {
        if (strcmp(call, fault_names[i]) == 0) {
            atomic_store(&fault_err[i], err);
            atomic_store(&fault_left[i], nth);
            atomic_store(&fault_armed, 1);
            return 0;
        }
    }
    return MMKV_EINVAL;
}

/* ---- futexes on a word of the shared mapping (watch(), issue 12) ---- */

#include <linux/futex.h>
#include <sys/syscall.h>

/* Sleep while *word == expected, at most timeout_ns.  Shared (not FUTEX_PRIVATE_FLAG): the
 * word lives in a file mapping, and the kernel keys it by inode and offset, so a FUTEX_WAKE
 * from any process that maps the file reaches the sleeper.  0 woken or the value changed,
 * -ETIMEDOUT, -EINTR (a signal: the caller returns so Python can run its handler). */
int os_futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t timeout_ns)
{
    struct timespec ts = {(time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u)};
    wait_begin();   /* asleep outside the GIL */
    long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, &ts, NULL, 0);
    int err = errno;
    wait_end();
    if (rc == 0 || err == EAGAIN)
        return 0;
    return -err;
}

static _Atomic uint64_t os_wake_count;

/* Wake every sleeper on word; never blocks. */
void os_futex_wake(_Atomic uint32_t *word)
{
    atomic_fetch_add(&os_wake_count, 1);
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

uint64_t mmkv_debug_wake_count(void)
{
    return atomic_load(&os_wake_count);
}

/* ---- issue 10: hard links and frozen files ---- */

int os_nlink(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    return st.st_nlink > INT32_MAX ? INT32_MAX : (int)st.st_nlink;
}

/* A file made immutable (chattr +i) or append-only (chattr +a) after it was opened cannot
 * be written through the mapping any more: the kernel answers the page fault with SIGBUS.
 * Say why instead of blaming a truncation. */
int os_file_frozen(int fd)
{
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
        return 0;
    return (flags & (FS_IMMUTABLE_FL | FS_APPEND_FL)) ? -EPERM : 0;
}

/* Can a hole in fd's file be read through a shared mapping without allocating space?  Not
 * on tmpfs or ramfs (shared memory stores live there): a read fault allocates a page, and
 * on a full file system that is SIGBUS even for a reader. */
int os_holes_free_to_read(int fd)
{
    struct statfs fs;
    if (fstatfs(fd, &fs) < 0)
        return 0;
    return fs.f_type != 0x01021994 /* TMPFS_MAGIC */ && fs.f_type != (long)0x858458f6 /* RAMFS */;
}
