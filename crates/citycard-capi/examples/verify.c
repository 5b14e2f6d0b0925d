/* Verify the card on a reader through citycard's C ABI and print the JSON.
 *
 *   cc verify.c -I include -L target/debug -lcitycard -o verify
 *   LD_LIBRARY_PATH=target/debug ./verify emulated:alex.card liege.bundle library.cred
 *
 * Exit status: the document's "code" (0 only for a genuine card). */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include "citycard.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s READER TRUST CREDENTIAL [OPTIONS_JSON]\n", argv[0]);
        return 2;
    }
    char *json = citycard_verify(argv[1], argv[2], argv[3], argc > 4 ? argv[4] : NULL);
    printf("%s\n", json);
    /* A real program parses the JSON; this one only reads "code". */
    int code = 1;
    const char *p = strstr(json, "\"code\":");
    if (p != NULL) code = atoi(p + 7);
    citycard_string_free(json); /* owned by us: released exactly once */
    fprintf(stderr, "citycard %s\n", citycard_version());
    return code;
}
