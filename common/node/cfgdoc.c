/*
 * cfgdoc.c: documents made from the daemons' option table (cfgkeys.c),
 * so that they say what --help says and cannot drift from it: the
 * example configuration (every key, commented, with its default) and the
 * man pages colo-primary(8), colo-secondary(8) and colo.conf(5).  The
 * tools/colo-docgen program writes them at build time.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cfgkeys.h"
#include "nodecfg.h"

#define WRAP 72

/* Text as comment lines ("# ...") wrapped at WRAP columns. */
static void comment(FILE *out, const char *text)
{
	const char *p = text;
	int col = 0;

	while (*p) {
		size_t w = strcspn(p, " \n");

		if (col == 0) {
			fputs("#", out);
			col = 1;
		}
		if (col > 1 && col + 1 + (int)w > WRAP) {
			fputs("\n#", out);
			col = 1;
		}
		fprintf(out, " %.*s", (int)w, p);
		col += 1 + (int)w;
		p += w;
		if (*p == '\n') {
			fputc('\n', out);
			col = 0;
		}
		p += strspn(p, " \n");
	}
	if (col)
		fputc('\n', out);
}

/* "X", or "X for colo-primary, Y for colo-secondary" when they differ. */
static void both_defaults(const struct colo_opt *o, char *out, size_t len)
{
	const char *p = colo__cfg_default_text(o, COLO_ROLE_PRIMARY);
	const char *s = colo__cfg_default_text(o, COLO_ROLE_SECONDARY);

	if (strcmp(p, s) == 0)
		snprintf(out, len, "%s", p);
	else
		snprintf(out, len, "%s for colo-primary, %s for colo-secondary", p, s);
}

/* The value line shows the default only when it is a plain value. */
static const char *plain_default(const struct colo_opt *o)
{
	return !o->dyn && o->def ? o->def : "";
}

static void example_key(void *ud, const struct colo_opt *o, bool first)
{
	FILE *out = ud;
	char text[1024], def[512];

	if (first)
		fprintf(out, "\n[%s]\n", colo_opt_section_names[o->section]);
	both_defaults(o, def, sizeof(def));
	snprintf(text, sizeof(text), "%s (default %s)", o->help, def);
	fputc('\n', out);
	comment(out, text);
	if (*plain_default(o))
		fprintf(out, "#%s = %s\n", o->key, plain_default(o));
	else
		fprintf(out, "#%s =\n", o->key);
}

void colo_config_example(const struct colo_guest_ops *const *guests, FILE *out)
{
	struct colo__cfg_keys k;

	colo__cfg_keys_init(&k, guests);
	fputs("# colo.conf.example: every key colo-primary and colo-secondary read,\n"
	      "# with what it does and its default.  Made from the daemons' option\n"
	      "# table, as their --help is.  Copy it to /etc/colo/NAME.conf for the\n"
	      "# systemd unit colo-primary@NAME or colo-secondary@NAME (or give it\n"
	      "# with -c), and uncomment what you change.  A flag of the same name\n"
	      "# (--key value) wins over the file.  Keys marked primary: or\n"
	      "# secondary: matter to that role only, so one file can serve a pair.\n",
	      out);
	colo__cfg_each_shown(&k, example_key, out);
}

/* Text for roff: backslashes, hyphens, and a leading dot or quote escaped. */
static void roff(FILE *out, const char *t)
{
	if (*t == '.' || *t == '\'')
		fputs("\\&", out);
	for (; *t; t++) {
		if (*t == '\\')
			fputs("\\e", out);
		else if (*t == '-')
			fputs("\\-", out);
		else if (*t == '\n') {
			fputc('\n', out);
			if (t[1] == '.' || t[1] == '\'')
				fputs("\\&", out);
		} else
			fputc(*t, out);
	}
}

/* One paragraph from text made of lines: joined into one. */
static void roff_para(FILE *out, const char *t)
{
	for (; *t; t++) {
		char c[2] = { *t == '\n' ? (t[1] ? ' ' : '\0') : *t, '\0' };

		if (c[0])
			roff(out, c);
	}
	fputc('\n', out);
}

struct man {
	FILE *out;
	bool as_flags;                   /* --key META, else key = META */
	enum colo_role role;             /* the defaults of (as_flags) */
};

static void man_key(void *ud, const struct colo_opt *o, bool first)
{
	const struct man *m = ud;
	FILE *out = m->out;
	char def[512];

	if (first)
		fprintf(out, ".SS [%s]\n", colo_opt_section_names[o->section]);
	fputs(".TP\n\\fB", out);
	if (m->as_flags) {
		roff(out, "--");
		roff(out, o->key);
		fputs(o->bare ? "\\fR[=\\fI" : "\\fR \\fI", out);
		roff(out, o->meta);
		fputs(o->bare ? "\\fR]\n" : "\\fR\n", out);
		snprintf(def, sizeof(def), "%s", colo__cfg_default_text(o, m->role));
	} else {
		roff(out, o->key);
		fputs("\\fR = \\fI", out);
		roff(out, o->meta);
		fputs("\\fR\n", out);
		both_defaults(o, def, sizeof(def));
	}
	roff(out, o->help);
	fputs(" (default ", out);
	roff(out, def);
	fputs(").\n", out);
}

static void man_keys(FILE *out, const struct colo__cfg_keys *k, bool as_flags,
		     enum colo_role role)
{
	struct man m = { out, as_flags, role };

	colo__cfg_each_shown(k, man_key, &m);
}

static void man_head(FILE *out, const char *title, int section, const char *name,
		     const char *what)
{
	fprintf(out, ".\\\" Made from the daemons' option table (common/node/cfgdoc.c).\n"
		".TH %s %d \"\" \"colo %s\" \"%s\"\n.SH NAME\n", title, section,
		PACKAGE_VERSION, section == 5 ? "File Formats" : "System Administration");
	roff(out, name);
	fputs(" \\- ", out);
	roff(out, what);
	fputc('\n', out);
}

static void man_daemon(FILE *out, enum colo_role role, const struct colo__cfg_keys *k)
{
	bool primary = role == COLO_ROLE_PRIMARY;
	const char *me = primary ? "colo-primary" : "colo-secondary";

	man_head(out, primary ? "COLO-PRIMARY" : "COLO-SECONDARY", 8, me,
		 primary ? "run a guest and replicate it to a colo-secondary"
			 : "hold a copy of a colo-primary's guest and take over");
	fprintf(out, ".SH SYNOPSIS\n.B %s\n[\\fIOPTIONS\\fR]\n.SH DESCRIPTION\n", me);
	roff_para(out, primary ? colo__cfg_intro_primary : colo__cfg_intro_secondary);
	fputs(".PP\n", out);
	roff_para(out, colo__cfg_intro_keys);
	fputs(".PP\nThe file's format and every key: \\fBcolo.conf\\fR(5).\n"
	      ".SH OPTIONS\n"
	      ".TP\n\\fB\\-c\\fR, \\fB\\-\\-config\\fR \\fIFILE\\fR\n"
	      "read settings from the INI file \\fIFILE\\fR.\n"
	      ".TP\n\\fB\\-\\-check\\-config\\fR\n"
	      "check the settings, say whether they are good and exit (0: good, 2: bad).\n"
	      ".TP\n\\fB\\-h\\fR, \\fB\\-\\-help\\fR\nprint the help and exit.\n"
	      ".TP\n\\fB\\-V\\fR, \\fB\\-\\-version\\fR\nprint the version and exit.\n", out);
	man_keys(out, k, true, role);
	fputs(".SH EXIT STATUS\n", out);
	for (int i = 0; colo__cfg_exit_statuses[i]; i++) {
		fprintf(out, ".TP\n.B %d\n", i);
		roff(out, colo__cfg_exit_statuses[i]);
		fputc('\n', out);
	}
	fprintf(out, ".SH SIGNALS\n.TP\n.B SIGTERM\\fR, \\fBSIGINT\nstop cleanly.\n"
		".TP\n.B SIGHUP\nread the configuration file again; a bad one is refused "
		"and the running configuration kept.\n"
		".SH FILES\n.TP\n.I /etc/colo/NAME.conf\nthe configuration of the systemd "
		"unit \\fB%s@NAME.service\\fR.\n"
		".TP\n.I /run/colo/NAME.sock\nthe control socket, for \\fBcolo\\-ctl\\fR(8) "
		"(as root).\n"
		".TP\n.I /var/lib/colo/NAME.generation\nthe node's generation (as root).\n"
		".SH SEE ALSO\n\\fB%s\\fR(8), \\fBcolo\\-ctl\\fR(8), \\fBcolo\\-replay\\fR(1), "
		"\\fBcolo.conf\\fR(5)\n", me, primary ? "colo\\-secondary" : "colo\\-primary");
}

static void man_conf(FILE *out, const struct colo__cfg_keys *k)
{
	man_head(out, "COLO.CONF", 5, "colo.conf",
		 "configuration of colo-primary and colo-secondary");
	fputs(".SH SYNOPSIS\n/etc/colo/\\fINAME\\fR.conf\n.SH DESCRIPTION\n"
	      "An INI file: \\fB[section]\\fR lines, then \\fIkey\\fR = \\fIvalue\\fR "
	      "lines; a line starting with # or ; is a comment.  The daemons read it "
	      "with \\fB\\-c\\fR \\fIFILE\\fR (the systemd units give "
	      "/etc/colo/\\fINAME\\fR.conf), again on SIGHUP.  Every key is also a "
	      "flag of both daemons (\\fB\\-\\-\\fR\\fIkey\\fR \\fIvalue\\fR), which wins "
	      "over the file.\n.PP\n", out);
	roff_para(out, colo__cfg_intro_keys);
	fputs(".PP\nAn example with every key, commented, is installed as "
	      "\\fIcolo.conf.example\\fR in the configuration directory.\n"
	      ".SH KEYS\n", out);
	man_keys(out, k, false, COLO_ROLE_PRIMARY);
	fputs(".SH SEE ALSO\n\\fBcolo\\-primary\\fR(8), \\fBcolo\\-secondary\\fR(8)\n", out);
}

int colo_config_man(const char *page, const struct colo_guest_ops *const *guests,
		    FILE *out)
{
	struct colo__cfg_keys k;

	colo__cfg_keys_init(&k, guests);
	if (strcmp(page, "colo-primary") == 0)
		man_daemon(out, COLO_ROLE_PRIMARY, &k);
	else if (strcmp(page, "colo-secondary") == 0)
		man_daemon(out, COLO_ROLE_SECONDARY, &k);
	else if (strcmp(page, "colo.conf") == 0)
		man_conf(out, &k);
	else
		return -1;
	return 0;
}
