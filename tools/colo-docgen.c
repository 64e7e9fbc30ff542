/*
 * colo-docgen: writes the documents made from the daemons' option table
 * (common/node/cfgdoc.c) at build time: `colo-docgen example` the example
 * configuration, `colo-docgen man PAGE` a man page (colo-primary,
 * colo-secondary, colo.conf).  Not installed.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "nodecfg.h"
#include "registry.h"

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "example") == 0)
		colo_config_example(colo_guest_list(), stdout);
	else if (argc == 3 && strcmp(argv[1], "man") == 0) {
		if (colo_config_man(argv[2], colo_guest_list(), stdout) != 0) {
			fprintf(stderr, "colo-docgen: no man page '%s' (colo-primary, "
				"colo-secondary or colo.conf)\n", argv[2]);
			return 2;
		}
	} else {
		fputs("usage: colo-docgen example | colo-docgen man PAGE\n", stderr);
		return 2;
	}
	return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}
