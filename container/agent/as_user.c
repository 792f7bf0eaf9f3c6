/*
 * sandbox-as-user UID PATH ARGV0 [ARG...]: become UID wholly, then exec PATH.
 *
 * The agent keeps root as its real uid (so that the sandbox user cannot signal or
 * trace it), so every program it starts must change its real uid too. CPython forks
 * instead of vforking whenever Popen changes a uid, and the exec from a forked copy
 * of the agent then tears down its whole address space: 1-1.5 ms more per program.
 * The agent vforks this instead, which needs no privilege to take the sandbox user's
 * uid (it is already the effective one) and, linked statically against musl, costs
 * about 0.05 ms (0.3 ms against glibc's static startup; util-linux setpriv, which
 * does the same, ~1.9 ms with its dynamic libraries). See identity.py.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fputs("usage: as-user UID PATH ARGV0 [ARG...]\n", stderr);
        return 2;
    }
    char *end;
    long uid = strtol(argv[1], &end, 10);
    if (*end != '\0' || uid <= 0) {
        fputs("as-user: UID must be a positive number\n", stderr);
        return 2;
    }
    if (setreuid((uid_t)uid, (uid_t)uid) != 0) {
        perror("as-user: setreuid");
        return 126;
    }
    execv(argv[2], &argv[3]);
    int err = errno;
    fprintf(stderr, "%s: %s\n", argv[3], strerror(err));
    return err == ENOENT ? 127 : 126;
}
