/*
 * The native anchor of the lock benchmark: N processes increment one counter under a
 * PTHREAD_PROCESS_SHARED pthread mutex in shared memory (glibc's default mutex type: a futex, no
 * spinning), the same loop as the JavaScript contenders, for a fixed time. Prints JSON:
 * {"total": n, "counts": [per process], "seconds": s}.
 *
 *   cc -O2 -o pthread_lock pthread_lock.c -lpthread && ./pthread_lock PROCESSES MILLISECONDS
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct shared {
    pthread_mutex_t mutex;
    atomic_int start, stop;
    double counter;
    long counts[64];
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int processes = argc > 1 ? atoi(argv[1]) : 2;
    int millis = argc > 2 ? atoi(argv[2]) : 1000;
    if (processes < 1 || processes > 64 || millis < 1) return 2;
    struct shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) return 1;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&s->mutex, &attr);
    for (int p = 0; p < processes; p++) {
        if (fork() == 0) {
            while (!atomic_load(&s->start)) {}
            long mine = 0;
            while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
                for (int i = 0; i < 64; i++) {
                    pthread_mutex_lock(&s->mutex);
                    s->counter += 1;
                    pthread_mutex_unlock(&s->mutex);
                }
                mine += 64;
            }
            s->counts[p] = mine;
            _exit(0);
        }
    }
    double started = now();
    atomic_store(&s->start, 1);
    usleep(millis * 1000);
    atomic_store(&s->stop, 1);
    while (wait(NULL) > 0) {}
    double seconds = now() - started;
    long total = 0;
    for (int p = 0; p < processes; p++) total += s->counts[p];
    if ((double)total != s->counter) {
        fprintf(stderr, "lost updates: %f != %ld\n", s->counter, total);
        return 1;
    }
    printf("{\"total\": %ld, \"seconds\": %f, \"counts\": [", total, seconds);
    for (int p = 0; p < processes; p++) printf("%s%ld", p ? ", " : "", s->counts[p]);
    printf("]}\n");
    return 0;
}
