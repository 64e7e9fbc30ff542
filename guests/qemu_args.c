/* qemu_args.c: see qemu_args.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu_args.h"

#define KiB ((uint64_t)1024)
#define MiB (1024 * KiB)
/* QEMU 7.2: 128 MiB for pc, q35, isapc and microvm; none has no RAM. */
#define DEFAULT_RAM (128 * MiB)
/* QEMU 7.2 rounds -m up to 8 KiB (vl.c, parse_memory_options). */
#define RAM_ALIGN (8 * KiB)
/* Sizes QEMU 7.2 under TCG misses dirty pages at (qemu-7.2-colo.md). */
#define TCG_BAD_MULTIPLE (256 * KiB)
/* How much of an option's value an error message quotes. */
#define QUOTE_MAX 200

/* ---- vectors ---- */

struct vec {
	char **v;
	int n, cap;
	bool oom;
};

/* Append s (owned; NULL means an allocation failed). */
static void vec_take(struct vec *v, char *s)
{
	if (s && !v->oom && v->n + 2 > v->cap) {
		int cap = v->cap ? 2 * v->cap : 16;
		char **nv = realloc(v->v, (size_t)cap * sizeof(*nv));

		if (nv) {
			v->v = nv;
			v->cap = cap;
		}
	}
	if (!s || v->oom || v->n + 2 > v->cap) {
		free(s);
		v->oom = true;
		return;
	}
	v->v[v->n++] = s;
	v->v[v->n] = NULL;
}

static void vec_dup(struct vec *v, const char *s)
{
	vec_take(v, strdup(s));
}

static char *fmt(const char *f, ...) COLO_PRINTF(1, 2);
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s;
	int r;

	va_start(ap, f);
	r = vasprintf(&s, f, ap);
	va_end(ap);
	return r < 0 ? NULL : s;
}

/* The vector, NULL-terminated even when empty; NULL if it ran out of memory. */
static char **vec_finish(struct vec *v)
{
	if (!v->oom && !v->v) {
		v->v = calloc(1, sizeof(*v->v));
		v->oom = !v->v;
	}
	if (v->oom) {
		colo_qemu_args_argv_free(v->v);
		v->v = NULL;
	}
	return v->v;
}

void colo_qemu_args_argv_free(char **argv)
{
	for (char **p = argv; p && *p; p++)
		free(*p);
	free(argv);
}

static int nomem(struct colo_err *err)
{
	return colo_err_set(err, ENOMEM, "vm-args: out of memory");
}

/* ---- splitting ---- */

int colo_qemu_args_split(const char *s, char ***argv, int *argc, struct colo_err *err)
{
	char *word = malloc(strlen(s) + 1);
	struct vec v = { 0 };
	const char *p = s, *open;
	bool in_word = false;
	size_t wl = 0;
	int r = 0;

	*argv = NULL;
	if (!word)
		return nomem(err);
	for (;;) {
		char c = *p;

		if (c == '\0' || isspace((unsigned char)c)) {
			if (in_word) {
				word[wl] = '\0';
				vec_dup(&v, word);
				wl = 0;
				in_word = false;
			}
			if (!c)
				break;
			p++;
		} else if (c == '\'' || c == '"') {
			open = p++;
			while (*p && *p != c) {
				/* Inside "...", a backslash quotes only these. */
				if (c == '"' && *p == '\\' && p[1] && strchr("\"\\$`\n", p[1])) {
					if (p[1] != '\n')
						word[wl++] = p[1];
					p += 2;
				} else {
					word[wl++] = *p++;
				}
			}
			if (!*p) {
				r = colo_err_set(err, EINVAL, "vm-args: unterminated %c quote at "
						 "position %zu", c, (size_t)(open - s) + 1);
				break;
			}
			p++;
			in_word = true;
		} else if (c == '\\' && !p[1]) {
			r = colo_err_set(err, EINVAL, "vm-args: the backslash at position %zu "
					 "escapes nothing", (size_t)(p - s) + 1);
			break;
		} else if (c == '\\') {
			/* \<newline> joins lines: it makes no word of its own. */
			if (p[1] != '\n') {
				word[wl++] = p[1];
				in_word = true;
			}
			p += 2;
		} else {
			word[wl++] = c;
			p++;
			in_word = true;
		}
	}
	free(word);
	*argv = vec_finish(&v);
	if (r || !*argv) {
		colo_qemu_args_argv_free(*argv);
		*argv = NULL;
		return r ? r : nomem(err);
	}
	if (argc)
		*argc = v.n;
	return 0;
}

/* ---- QEMU's option strings ---- */

/*
 * The last value of `key` in a QEMU option string, read as QemuOpts and
 * keyval read it: ",," is a comma; a first element without '=' is the
 * value of `implied` (if any); later, "k" is k=on and "nok" k=off.  When
 * `json` and s starts with '{', s is a JSON object (-object, -blockdev,
 * -device): strings as they are, booleans as on/off.  malloc'd or NULL.
 */
static char *get_json(const char *s, const char *key, bool *oom)
{
	json_t *o = json_loads(s, 0, NULL), *v = json_object_get(o, key);
	char *out = NULL;

	if (json_is_string(v))
		out = strdup(json_string_value(v));
	else if (json_is_boolean(v))
		out = strdup(json_is_true(v) ? "on" : "off");
	else if (json_is_integer(v))
		out = fmt("%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else
		v = NULL;
	if (v && !out)
		*oom = true;
	json_decref(o);
	return out;
}

static char *get(const char *s, const char *implied, const char *key, bool json, bool *oom)
{
	const char *p = s;
	char *out = NULL;
	bool first = true;

	if (json && *s == '{')
		return get_json(s, key, oom);
	while (*p) {
		size_t len = strcspn(p, "=,");
		const char *name = p, *val = NULL, *flag = NULL;
		size_t nlen = len;

		if (p[len] == '=') {
			val = p + len + 1;
		} else if (first && implied) {
			name = implied;
			nlen = strlen(implied);
			val = p;
		} else if (len >= 2 && strncmp(p, "no", 2) == 0) {
			name = p + 2;
			nlen = len - 2;
			flag = "off";
		} else {
			flag = "on";
		}
		first = false;
		if (!val) {
			p += len;
		} else {
			/* The value runs to the first single comma. */
			const char *q = val;

			while (*q && !(q[0] == ',' && q[1] != ',')) {
				if (q[0] == ',')
					q++;
				q++;
			}
			if (nlen == strlen(key) && strncmp(name, key, nlen) == 0) {
				char *d = malloc((size_t)(q - val) + 1), *w = d;

				free(out);
				out = d;
				for (const char *r = val; d && r < q; r++) {
					*w++ = *r;
					if (r[0] == ',')
						r++;
				}
				if (d)
					*w = '\0';
				else
					*oom = true;
			}
			p = q;
		}
		if (flag && nlen == strlen(key) && strncmp(name, key, nlen) == 0) {
			free(out);
			out = strdup(flag);
			if (!out)
				*oom = true;
		}
		if (*p == ',')
			p++;
	}
	return out;
}

/* QEMU's booleans (qapi_bool_parse); anything else is not "on". */
static bool is_on(const char *v)
{
	return v && (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") ||
		     !strcmp(v, "y"));
}

/* Does `key` read as on?  Frees what get() returned. */
static bool get_on(const char *s, const char *implied, const char *key, bool json, bool *oom)
{
	char *v = get(s, implied, key, json, oom);
	bool on = is_on(v);

	free(v);
	return on;
}

/*
 * A size as QEMU 7.2's -m reads it (qemu_strtosz, then parse_memory_options):
 * decimal with an optional fraction, or 0x hex; an optional suffix B K M G T
 * P E (either case, powers of 1024; a fraction needs one); a value ending in
 * a digit is MiB.  0 on success.
 */
static int parse_size(const char *s, uint64_t *bytes)
{
	static const char suffixes[] = "BKMGTPE";
	bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
	uint64_t val, frac = 0, frac_div = 1, mul = 1;
	unsigned __int128 total;
	const char *sfx;
	char *p;

	if (!isdigit((unsigned char)s[0]) || (hex && !isxdigit((unsigned char)s[2])))
		return -EINVAL;
	errno = 0;
	val = strtoull(s + 2 * hex, &p, hex ? 16 : 10);
	if (errno)
		return -ERANGE;
	/* QEMU takes no fraction and no suffix after hex. */
	if (!hex && *p == '.') {
		for (p++; isdigit((unsigned char)*p); p++) {
			if (frac_div < 1000000000000000000ull) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				frac_div *= 10;
			}
		}
	}
	if (!hex && *p && (sfx = strchr(suffixes, toupper((unsigned char)*p))) != NULL) {
		for (int i = 0; i < sfx - suffixes; i++)
			mul *= 1024;
		p++;
	}
	if (*p || (mul == 1 && frac))
		return -EINVAL;
	/* val * mul + frac / frac_div * mul, rounding half up, as QEMU does. */
	total = (unsigned __int128)val * mul +
		((unsigned __int128)frac * mul + frac_div / 2) / frac_div;
	if (isdigit((unsigned char)s[strlen(s) - 1]))
		total *= MiB;
	if (total > UINT64_MAX - RAM_ALIGN)
		return -ERANGE;
	*bytes = (uint64_t)total;
	return 0;
}

/* ---- the options ---- */

enum kind {
	K_PLAIN,         /* colo reads nothing from it */
	K_REFUSE,        /* a clash: `why` */
	K_M, K_MACHINE, K_ACCEL, K_ENABLE_KVM, K_SNAPSHOT,
	K_DRIVE, K_SHORT_DISK, K_CDROM, K_BLOCKDEV, K_FSDEV, K_DEVICE, K_OBJECT, K_SET,
	K_NET, K_NODEFAULTS,
};

struct opt {
	const char *name;
	bool value;      /* takes the next word */
	enum kind kind;
	const char *why;
};

#define WHY_RAM "colo manages the VM's RAM backend (on failover, the committed RAM file)"
#define A(n, k) { n, true, k, NULL }
#define F(n, k) { n, false, k, NULL }
#define V(n) A(n, K_PLAIN)

static const struct opt opts[] = {
	A("m", K_M), A("machine", K_MACHINE), A("M", K_MACHINE), A("accel", K_ACCEL),
	F("enable-kvm", K_ENABLE_KVM), F("snapshot", K_SNAPSHOT), A("drive", K_DRIVE),
	A("hda", K_SHORT_DISK), A("hdb", K_SHORT_DISK), A("hdc", K_SHORT_DISK),
	A("hdd", K_SHORT_DISK), A("fda", K_SHORT_DISK), A("fdb", K_SHORT_DISK),
	A("pflash", K_SHORT_DISK), A("mtdblock", K_SHORT_DISK), A("sd", K_SHORT_DISK),
	A("cdrom", K_CDROM), A("blockdev", K_BLOCKDEV), A("fsdev", K_FSDEV),
	A("virtfs", K_FSDEV), A("device", K_DEVICE), A("object", K_OBJECT), A("set", K_SET),
	A("netdev", K_NET), A("nic", K_NET), A("net", K_NET), F("nodefaults", K_NODEFAULTS),
	{ "incoming", true, K_REFUSE,
	  "colo starts the incoming side itself (on failover, -incoming defer)" },
	{ "loadvm", true, K_REFUSE,
	  "the VM's state comes from colo's checkpoints, not from a snapshot" },
	{ "S", false, K_REFUSE, "colo decides when the VM runs" },
	{ "daemonize", false, K_REFUSE,
	  "colo supervises QEMU by the pid it started, which -daemonize leaves" },
	{ "mem-path", true, K_REFUSE, WHY_RAM },
	{ "mem-prealloc", false, K_REFUSE,
	  "QEMU 7.2 would preallocate the committed RAM colo maps on failover too, "
	  "so failover time would grow with the VM's size" },
	{ "runas", true, K_REFUSE,
	  "QEMU would reach colo's sockets as another user, and changing user clears "
	  "the parent-death signal that ends QEMU with colo (run colo as that user)" },
	{ "chroot", true, K_REFUSE,
	  "QEMU would look colo's migration socket up inside the chroot" },
	{ "readconfig", true, K_REFUSE,
	  "colo cannot check what a config file adds (put its options in vm-args)" },
	/* Every other option of QEMU 7.2 (x86_64) that takes a value. */
	V("D"), V("L"), V("acpitable"), V("action"), V("add-fd"), V("append"), V("audio"),
	V("audiodev"), V("bios"), V("boot"), V("chardev"), V("compat"), V("cpu"), V("d"),
	V("debugcon"), V("dfilter"), V("display"), V("dtb"), V("dump-vmstate"), V("echr"),
	V("fw_cfg"), V("g"), V("gdb"), V("global"), V("icount"), V("initrd"), V("iscsi"),
	V("k"), V("kernel"), V("mon"), V("monitor"), V("msg"), V("name"), V("numa"), V("option-rom"), V("overcommit"), V("parallel"),
	V("pidfile"), V("plugin"), V("prom-env"), V("qmp"), V("qmp-pretty"), V("qtest"),
	V("qtest-log"), V("rotate"), V("rtc"), V("sandbox"), V("seed"),
	V("semihosting-config"), V("serial"), V("smbios"), V("smp"), V("spice"),
	V("tpmdev"), V("trace"), V("usbdevice"), V("uuid"), V("vga"), V("vnc"),
	V("watchdog"), V("watchdog-action"), V("xen-domid"),
};

/* -set of these groups changes what colo read. */
static const char *const set_groups[] = {
	"accel", "drive", "fsdev", "machine", "memory", "object",
};

#define FIX_DRIVE "make it readonly=on or snapshot=on, or set vm-disk-unprotected = yes"
#define FIX_SHORT "add -snapshot, or give it as -drive with readonly=on, or set " \
	"vm-disk-unprotected = yes"
#define FIX_BLOCKDEV "make it read-only=on, or set vm-disk-unprotected = yes"
#define FIX_FSDEV "make it readonly=on, or set vm-disk-unprotected = yes"
#define FIX_VHOST "colo cannot see its storage: set vm-disk-unprotected = yes if it is " \
	"protected elsewhere"

/* QEMU compares `--opt` as `-opt` (vl.c, lookup_opt). */
static const struct opt *find_opt(const char *word)
{
	const char *name = word + 1 + (word[1] == '-');

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (strcmp(name, opts[i].name) == 0)
			return &opts[i];
	return NULL;
}

/* ---- inspection ---- */

/* A writable disk, in argv order. */
struct candidate {
	int index;       /* -1: none */
	char *desc;
	const char *fix;
};

struct scan {
	struct colo_qemu_args *a;
	bool oom;
	char *accels;            /* -accel names, ':'-joined */
	char *machine_accel;     /* the last -machine accel= / -enable-kvm */
	struct candidate temp;   /* one -snapshot makes temporary */
	struct candidate kept;   /* one it does not reach */
};

/* The first writable disk of its kind: "WORD VALUE", or a bare word. */
static void candidate(struct scan *sc, struct candidate *c, int index, const char *word,
		      const char *v, const char *fix)
{
	if (c->index >= 0)
		return;
	c->desc = v ? fmt("%s %s", word, v) : fmt("disk image %s", word);
	c->index = index;
	c->fix = fix;
	sc->oom |= !c->desc;
}

static void replace(char **dst, char *src)
{
	free(*dst);
	*dst = src;
}

static int refuse(const char *word, const char *value, const char *why, struct colo_err *err)
{
	return colo_err_set(err, EINVAL, "vm-args: %s%s%.*s: %s", word, value ? " " : "",
			    QUOTE_MAX, value ? value : "", why);
}

/* One option with its value (NULL when it takes none). */
static int inspect_opt(struct scan *sc, int index, const char *word, const struct opt *o,
		       const char *v, struct colo_err *err)
{
	struct colo_qemu_args *a = sc->a;
	bool *oom = &sc->oom;
	char *s;

	switch (o->kind) {
	case K_PLAIN:
		break;
	case K_REFUSE:
		return refuse(word, v, o->why, err);
	case K_M: {
		uint64_t bytes;

		s = get(v, "size", "size", false, oom);
		if (s && parse_size(s, &bytes) != 0) {
			free(s);
			return colo_err_set(err, EINVAL, "vm-args: %s %.*s: not a RAM size (a "
					    "number of MiB, or one with a suffix k, M, G or T: "
					    "256, 256M, 262136k, 2G)", word, QUOTE_MAX, v);
		}
		if (s)
			a->ram_bytes = bytes;
		free(s);
		break;
	}
	case K_MACHINE:
		if ((s = get(v, "type", "memory-backend", false, oom)) != NULL) {
			free(s);
			return refuse(word, v, WHY_RAM, err);
		}
		if ((s = get(v, "type", "type", false, oom)) != NULL)
			replace(&a->machine, s);
		if ((s = get(v, "type", "accel", false, oom)) != NULL)
			replace(&sc->machine_accel, s);
		break;
	case K_ACCEL:
		if ((s = get(v, "accel", "accel", false, oom)) != NULL) {
			replace(&sc->accels, sc->accels ? fmt("%s:%s", sc->accels, s) : strdup(s));
			*oom |= !sc->accels;
			free(s);
		}
		break;
	case K_ENABLE_KVM:
		/* QEMU 7.2 takes it as -machine accel=kvm, at its place. */
		replace(&sc->machine_accel, strdup("kvm"));
		*oom |= !sc->machine_accel;
		break;
	case K_SNAPSHOT:
		a->snapshot = true;
		break;
	case K_DRIVE: {
		char *media = get(v, NULL, "media", false, oom);
		bool ro = get_on(v, NULL, "readonly", false, oom) ||
			  get_on(v, NULL, "read-only", false, oom) ||
			  (media && strcmp(media, "cdrom") == 0);

		free(media);
		a->disks++;
		if (!ro && !get_on(v, NULL, "snapshot", false, oom))
			candidate(sc, &sc->temp, index, word, v, FIX_DRIVE);
		break;
	}
	case K_SHORT_DISK:
		a->disks++;
		candidate(sc, &sc->temp, index, word, v, FIX_SHORT);
		break;
	case K_CDROM:
		a->disks++;
		break;
	case K_BLOCKDEV:
		a->disks++;
		if (!get_on(v, "driver", "read-only", true, oom))
			candidate(sc, &sc->kept, index, word, v, FIX_BLOCKDEV);
		break;
	case K_FSDEV:
		/* synth is QEMU's in-memory test file system: nothing of the host's. */
		s = get(v, "fsdriver", "fsdriver", false, oom);
		if (!s || strcmp(s, "synth") != 0) {
			a->disks++;
			if (!get_on(v, "fsdriver", "readonly", false, oom))
				candidate(sc, &sc->kept, index, word, v, FIX_FSDEV);
		}
		free(s);
		break;
	case K_DEVICE:
		s = get(v, "driver", "driver", true, oom);
		if (s && (strncmp(s, "vhost-user-blk", 14) == 0 ||
			  strncmp(s, "vhost-user-fs", 13) == 0)) {
			a->disks++;
			candidate(sc, &sc->kept, index, word, v, FIX_VHOST);
		}
		free(s);
		break;
	case K_OBJECT:
		s = get(v, "qom-type", "qom-type", true, oom);
		if (s && strncmp(s, "memory-backend-", 15) == 0) {
			free(s);
			return refuse(word, v, WHY_RAM, err);
		}
		free(s);
		break;
	case K_NET:
		/* -nic none / -net none: no NIC at all (and no default one). */
		s = get(v, "type", "type", false, oom);
		if (s && strcmp(s, "none") == 0 && strcmp(word + 1 + (word[1] == '-'), "netdev"))
			a->net_none = true;
		else if (!a->net_arg)
			*oom |= !(a->net_arg = fmt("%s %s", word, v));
		free(s);
		break;
	case K_NODEFAULTS:
		a->nodefaults = true;
		break;
	case K_SET:
		for (size_t i = 0; i < sizeof(set_groups) / sizeof(set_groups[0]); i++) {
			size_t n = strlen(set_groups[i]);

			if (strncmp(v, set_groups[i], n) == 0 && v[n] == '.')
				return refuse(word, v, "colo reads these options where they are "
					      "given and cannot follow -set (write the value "
					      "in the option itself)", err);
		}
		break;
	}
	return 0;
}

static char *escape_commas(const char *s);

/* Has the ':'-separated list this name? */
static bool list_has(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; p && *p; p += strcspn(p, ":"), p += *p == ':') {
		if (strncmp(p, name, n) == 0 && (p[n] == ':' || p[n] == '\0'))
			return true;
	}
	return false;
}

/* After the pass: what depends on every option. */
static int conclude(struct scan *sc, struct colo_err *err)
{
	struct colo_qemu_args *a = sc->a;
	const char *m = a->machine;
	struct candidate *c = &sc->kept;

	if (sc->accels && sc->machine_accel)
		return colo_err_set(err, EINVAL, "vm-args: -accel with -machine accel= or "
				    "-enable-kvm: QEMU 7.2 refuses both (give the "
				    "accelerator once)");
	a->accel = sc->accels ? sc->accels : sc->machine_accel ? sc->machine_accel
		   : strdup("");
	sc->accels = sc->machine_accel = NULL;
	if (!a->accel)
		return nomem(err);
	a->accel_tcg = list_has(a->accel, "tcg");

	/* The names QEMU 7.2 gives the RAM block (mc->default_ram_id). */
	a->has_vcpus = !(m && strcmp(m, "none") == 0);
	a->ram_block = !a->has_vcpus ? "ram" : m && strcmp(m, "microvm") == 0 ?
		       "microvm.ram" : "pc.ram";
	/* -m 0 means the default, as it does to QEMU. */
	if (a->ram_bytes == 0)
		a->ram_bytes = a->has_vcpus ? DEFAULT_RAM : 0;
	a->ram_bytes = (a->ram_bytes + RAM_ALIGN - 1) & ~(uint64_t)(RAM_ALIGN - 1);

	if (!a->snapshot && sc->temp.index >= 0 &&
	    (c->index < 0 || sc->temp.index < c->index))
		c = &sc->temp;
	if (c->index >= 0) {
		a->writable_disk = c->desc;
		a->writable_fix = c->fix;
		c->desc = NULL;
	}
	return 0;
}

int colo_qemu_args_inspect(const char *const *argv, struct colo_qemu_args *a,
			   struct colo_err *err)
{
	struct scan sc = { .a = a, .temp = { .index = -1 }, .kept = { .index = -1 } };
	struct vec copy = { 0 };
	int r = 0, i;

	memset(a, 0, sizeof(*a));
	for (i = 0; argv[i] && r == 0; i++) {
		const char *w = argv[i];
		const struct opt *o;

		vec_dup(&copy, w);
		if (w[0] != '-') {
			/* QEMU takes a word that is no option as the first hard disk. */
			a->disks++;
			candidate(&sc, &sc.temp, i, w, NULL, FIX_SHORT);
		} else if ((o = find_opt(w)) == NULL) {
			continue;   /* not one colo reads: QEMU judges it */
		} else if (o->value && !argv[i + 1]) {
			r = colo_err_set(err, EINVAL, "vm-args: %s needs a value", w);
		} else {
			r = inspect_opt(&sc, i, w, o, o->value ? argv[i + 1] : NULL, err);
			if (o->value)
				vec_dup(&copy, argv[++i]);
		}
		if (r == 0 && (sc.oom || copy.oom))
			r = nomem(err);
	}
	a->argc = copy.n;
	a->argv = vec_finish(&copy);
	if (r == 0 && !a->argv)
		r = nomem(err);
	if (r == 0)
		r = conclude(&sc, err);
	free(sc.accels);
	free(sc.machine_accel);
	free(sc.temp.desc);
	free(sc.kept.desc);
	if (r)
		colo_qemu_args_free(a);
	return r;
}

int colo_qemu_args_parse(const char *vm_args, struct colo_qemu_args *a, struct colo_err *err)
{
	char **argv;
	int r = colo_qemu_args_split(vm_args, &argv, NULL, err);

	if (r) {
		memset(a, 0, sizeof(*a));
		return r;
	}
	r = colo_qemu_args_inspect((const char *const *)argv, a, err);
	colo_qemu_args_argv_free(argv);
	return r;
}

void colo_qemu_args_free(struct colo_qemu_args *a)
{
	colo_qemu_args_argv_free(a->argv);
	free(a->accel);
	free(a->machine);
	free(a->writable_disk);
	free(a->net_arg);
	free(a->nic_device);
	free(a->nic_sock);
	memset(a, 0, sizeof(*a));
}

int colo_qemu_args_check(const struct colo_qemu_args *a,
			 const struct colo_qemu_args_policy *policy, struct colo_err *err)
{
	static const struct colo_qemu_args_policy strict;

	if (!policy)
		policy = &strict;
	if (a->writable_disk && !policy->disk_unprotected)
		return colo_err_set(err, EINVAL, "vm-args: %.*s is writable: a failover rolls "
				    "RAM back but not the disk (%s)", QUOTE_MAX,
				    a->writable_disk, a->writable_fix);
	if (a->accel_tcg && a->has_vcpus && !policy->tcg_ok)
		return colo_err_set(err, EINVAL, "vm-args: accelerator %s with vCPUs: QEMU "
				    "7.2's COLO primary deadlocks and misses dirty pages under "
				    "TCG (use kvm, or set qemu-tcg-ok = yes if your QEMU is "
				    "fixed)", a->accel);
	if (a->net_arg && !policy->net_unprotected)
		return colo_err_set(err, EINVAL, "vm-args: %.*s: the VM's frames would bypass "
				    "output commit, so a client could see what a failover rolls "
				    "back (name the NIC in vm-nics and colo carries it, or set "
				    "vm-net-unprotected = yes)", QUOTE_MAX, a->net_arg);
	if (!a->net_arg && !a->net_none && !a->nodefaults && !policy->colo_nic &&
	    !policy->net_unprotected)
		return colo_err_set(err, EINVAL, "vm-args: no NIC named, so QEMU adds its "
				    "default one (user networking), whose frames would bypass "
				    "output commit (name the NIC in vm-nics, or add -nodefaults "
				    "or -nic none, or set vm-net-unprotected = yes)");
	return 0;
}

int colo_qemu_args_set_nic(struct colo_qemu_args *a, const char *device, const char *sock,
			   struct colo_err *err)
{
	bool oom = false;
	char *nd = get(device, "driver", "netdev", false, &oom);

	if (nd || oom) {
		free(nd);
		return oom ? nomem(err) : colo_err_set(err, EINVAL, "vm-nics %.*s: names a "
						       "netdev, which colo adds itself", QUOTE_MAX,
						       device);
	}
	if (!*device || *device == ',' || *device == '{')
		return colo_err_set(err, EINVAL, "vm-nics '%.*s': a NIC model with its options, "
				    "e.g. virtio-net-pci,mac=52:54:00:12:34:56", QUOTE_MAX, device);
	if (strchr(device, ' '))
		return colo_err_set(err, EINVAL, "vm-nics '%.*s': one NIC (colo carries one "
				    "for now), written without blanks", QUOTE_MAX, device);
	free(a->nic_device);
	free(a->nic_sock);
	a->nic_device = strdup(device);
	a->nic_sock = escape_commas(sock);
	if (!a->nic_device || !a->nic_sock)
		return nomem(err);
	return 0;
}

const char *colo_qemu_args_tcg_warning(const struct colo_qemu_args *a, char *buf, size_t n)
{
	/* Without vCPUs nothing writes through TCG's TLB, whose state is missed. */
	if (!a->accel_tcg || !a->has_vcpus || a->ram_bytes % TCG_BAD_MULTIPLE != 0)
		return NULL;
	snprintf(buf, n, "vm-args: %" PRIu64 " KiB of RAM under TCG is a multiple of 256 KiB, "
		 "where QEMU 7.2 misses dirty pages and a failover restores stale ones (use "
		 "a size that is not, e.g. -m %" PRIu64 "k)", a->ram_bytes / KiB,
		 a->ram_bytes / KiB - 8);
	return buf;
}

/* ---- the vectors colo runs ---- */

/* A value inside a QEMU option string: a comma doubles. */
static char *escape_commas(const char *s)
{
	size_t n = strlen(s) + 1;
	char *out, *w;

	for (const char *p = s; *p; p++)
		n += *p == ',';
	out = malloc(n);
	for (w = out; out && *s; s++) {
		*w++ = *s;
		if (*s == ',')
			*w++ = ',';
	}
	if (out)
		*w = '\0';
	return out;
}

/* Without ram_path: the primary's vector. */
int colo_qemu_args_failover(const struct colo_qemu_args *a, const char *binary,
			    const char *qmp_path, const char *ram_path, char ***argv,
			    struct colo_err *err)
{
	char *qmp = escape_commas(qmp_path), *ram = ram_path ? escape_commas(ram_path) : NULL;
	struct vec v = { 0 };

	vec_dup(&v, binary);
	for (int i = 0; i < a->argc; i++)
		vec_dup(&v, a->argv[i]);
	if (!a->accel[0]) {
		vec_dup(&v, "-accel");
		vec_dup(&v, "kvm");
	}
	vec_dup(&v, "-qmp");
	vec_take(&v, qmp ? fmt("unix:%s,server=on,wait=off", qmp) : NULL);
	if (ram_path && a->ram_bytes) {
		vec_dup(&v, "-machine");
		vec_take(&v, fmt("memory-backend=%s", a->ram_block));
		vec_dup(&v, "-object");
		vec_take(&v, ram ? fmt("memory-backend-file,id=%s,size=%" PRIu64 ",mem-path=%s,"
				       "share=on", a->ram_block, a->ram_bytes, ram) : NULL);
	}
	if (a->nic_device) {
		vec_dup(&v, "-netdev");
		vec_take(&v, fmt("stream,id=colo-net0,server=off,addr.type=unix,addr.path=%s",
				 a->nic_sock));
		vec_dup(&v, "-device");
		vec_take(&v, fmt("%s,netdev=colo-net0", a->nic_device));
	}
	if (ram_path) {
		vec_dup(&v, "-incoming");
		vec_dup(&v, "defer");
	}
	free(qmp);
	free(ram);
	*argv = vec_finish(&v);
	return *argv ? 0 : nomem(err);
}

int colo_qemu_args_primary(const struct colo_qemu_args *a, const char *binary,
			   const char *qmp_path, char ***argv, struct colo_err *err)
{
	return colo_qemu_args_failover(a, binary, qmp_path, NULL, argv, err);
}
