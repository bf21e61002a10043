/* A syscall probe for the escape tests: built with gcc -static by a fixture, run inside
 * containers (bind-mounted, or shipped setuid-root in an image layer).
 *
 *   probe NR [ARG...]   syscall(NR, ARG...), numeric arguments (0x… allowed)
 *   probe mkdir PATH    mkdir(PATH, 0755)
 *   probe id            the effective uid and the effective capabilities
 *
 * One line out: "ok RET" or "err ERRNAME" (e.g. "err EPERM"), or "euid N CapEff HEX".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int report(long ret) {
    if (ret < 0) {
        const char *name = strerrorname_np(errno);
        printf("err %s\n", name ? name : "?");
    } else {
        printf("ok %ld\n", ret);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe NR [ARG...] | mkdir PATH | id\n");
        return 2;
    }
    if (strcmp(argv[1], "id") == 0) {
        char line[256], caps[64] = "?";
        FILE *f = fopen("/proc/self/status", "r");
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "CapEff: %63s", caps) == 1)
                break;
        printf("euid %d CapEff %s\n", (int)geteuid(), caps);
        return 0;
    }
    if (strcmp(argv[1], "mkdir") == 0 && argc == 3)
        return report(mkdir(argv[2], 0755));
    unsigned long a[6] = {0};
    for (int i = 2; i < argc && i < 8; i++)
        a[i - 2] = strtoul(argv[i], NULL, 0);
    return report(syscall(strtol(argv[1], NULL, 0), a[0], a[1], a[2], a[3], a[4], a[5]));
}
