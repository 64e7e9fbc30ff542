/*
 * qemu_int.h: what the files of the qemu guest share (not API; see qemu.h).
 *
 *   qemu.c        the guest's ops, its keys, pause/resume and output
 *                 epochs, the supervisor thread (QMP liveness, events,
 *                 x-checkpoint-delay, and the checkpoints held frames
 *                 ask for)
 *   qemu_net.c    the VM's frames between its NIC and a tap (qemu_net.h)
 *   qemu_relay.c  the relay thread: QEMU's COLO protocol, the secondary's
 *                 side, on the migration socket; the initial migration and
 *                 each checkpoint into the mirror
 *   qemu_vm.c     QEMU's command lines, starting it as a COLO primary, the
 *                 secondary's probe of the RAM blocks, and the failover:
 *                 QEMU started on the committed RAM
 *
 * Threads: the node's loop thread calls the ops.  Once started, the relay
 * thread owns the migration socket and the stream reader; QMP is shared by
 * the supervisor and the relay (a promoted node's relay starts the x-colo
 * migration) under qmp_lock, and used by the loop thread only before the
 * threads start and after they are joined.  `lock` guards what they share
 * with the loop: paused, the mirror and the device while a checkpoint is
 * applied, the epochs, the interval, and the counters.
 */
#ifndef COLO_GUEST_QEMU_INT_H
#define COLO_GUEST_QEMU_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "guest.h"
#include "qemu.h"
#include "qemu_args.h"
#include "qemu_net.h"
#include "qmp.h"
#include "ramfmt.h"
#include "role.h"
#include "stream.h"

struct colo_ram;
struct colo_ram_block;
struct colo_savevm;
struct colo_vmdesc;

/* The colo device that carries QEMU's device state (vmstate in qemu.c). */
struct qemu_vm_dev {
	uint8_t machine[64];          /* QEMU's configuration name, NUL-padded */
	uint32_t ram_section_id;      /* QEMU's id of its "ram" section */
	uint32_t blob_len;
	uint8_t *blob;                /* device sections as QEMU saved them, then EOF */
	/* subsection qemu/vm/vmdesc: QEMU's VMDESCRIPTION of the initial
	 * migration, sent with a full sync only (replay decodes the device
	 * sections with it) */
	bool vmdesc_due;
	uint32_t vmdesc_len;
	uint8_t *vmdesc;              /* JSON text, not NUL-terminated */
};

/* A page of a checkpoint from QEMU, held until the whole checkpoint is in. */
struct qemu_pend {
	uint32_t block;
	uint64_t offset;
	bool zero;
	uint8_t fill;
	size_t at;                    /* RAW: offset of the page in pend_data */
};

/* Bytes read from the migration socket and not yet used. */
struct qemu_rbuf {
	uint8_t *data;
	size_t len, pos, cap;
};

#define QEMU_PATH_MAX 108             /* sun_path */
#define QEMU_PAUSE_RING 1024

struct qemu_guest {
	struct colo_guest base;
	const struct colo_qemu_settings *set;
	enum colo_role role;
	char node[256];
	char dir[PATH_MAX];           /* <state-dir>/vm: sockets, QEMU's log */
	char qmp_path[QEMU_PATH_MAX];
	char mig_path[QEMU_PATH_MAX];
	char in_path[QEMU_PATH_MAX];
	char net_path[QEMU_PATH_MAX]; /* the VM's NIC's socket (vm-nics) */
	char log_path[PATH_MAX];
	char ram_path[PATH_MAX];      /* the secondary's committed pc.ram */
	struct colo_qemu_args args;   /* vm-args, read and checked */
	char *binary;                 /* qemu-binary, found on PATH */
	bool standby;                 /* secondary: qmp is the failover's QEMU,
					 started ahead, waiting (-incoming defer) */
	struct qemu_net *net;         /* the VM's frames (vm-nics), or NULL */
	uint32_t min_interval_ms;     /* min-interval-ms: kicks no closer */
	struct colo_qmp qmp;
	pthread_mutex_t qmp_lock;     /* QMP: the relay and the supervisor */
	int listen_fd;                /* the migration listener (primary) */
	int mig_fd;                   /* QEMU's migration connection */
	int wake[2];                  /* a pipe: stop() wakes the threads */
	/* RAM: the mirror (primary) or the committed RAM (secondary) */
	struct colo_ram *ram;
	struct colo_savevm *sv;
	struct colo_ram_block **blocks;
	struct colo_ram_block_info *binfo;
	size_t nblocks;
	struct qemu_vm_dev dev;
	/* the relay's reading of QEMU's stream */
	struct qemu_rbuf rb;
	struct colo_stream_reader *sr;
	struct colo_ram_reader rr;
	uint64_t sr_base;             /* stream offset of rb.data[rb.pos] */
	uint8_t hist[4096];           /* the last bytes fed to sr */
	size_t hist_len;
	bool ram_started, ram_ended, enable_colo, in_ckpt;
	int64_t dev_at;               /* stream offset of the first device section */
	struct colo_buf devbuf;       /* the initial migration's device sections */
	char devs_why[640];           /* why what looked like their end was not */
	struct colo_vmdesc *vd;
	struct qemu_pend *pend;
	size_t npend, pend_cap;
	struct colo_buf pend_data;
	/* threads */
	pthread_t relay_thr, sup_thr;
	bool relay_on, sup_on;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool paused, stopping, ready, running;
	bool promoted;                /* was the secondary: ram_path is ours */
	bool colo_pending;            /* promoted: the relay starts x-colo first */
	uint64_t epoch, released;
	uint32_t interval_ms;
	bool interval_dirty;
	uint32_t delay_set_ms;        /* x-checkpoint-delay as QEMU last took it */
	bool kick;                    /* held frames want a checkpoint now */
	uint64_t last_request_ns;     /* QEMU's last CHECKPOINT_REQUEST */
	uint64_t last_loaded_ns;      /* ... and the LOADED that ended it */
	void (*notify)(void *ud);
	void *notify_ud;
	void (*died)(void *ud, const char *why);
	void *died_ud;
	bool died_said;
	/* counters (under lock) */
	uint64_t ckpts;               /* checkpoints taken from QEMU */
	uint64_t bytes_in;            /* bytes QEMU sent */
	uint64_t pages_in;
	uint64_t pauses;              /* pauses measured (checkpoints answered) */
	uint64_t pause_last_ns, pause_sum_ns, pause_max_ns;
	uint32_t pause_us[QEMU_PAUSE_RING]; /* the last pauses, for percentiles */
	uint64_t failover_ns;         /* secondary: QEMU start to running */
};

static inline struct qemu_guest *qg(struct colo_guest *g)
{
	return (struct qemu_guest *)g;
}

/* qemu.c */
void qemu_policy_of(const struct colo_qemu_settings *set, struct colo_qemu_args_policy *pol);
void qemu_died(struct qemu_guest *q, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void qemu_notify(struct qemu_guest *q);
/* QEMU closed its migration connection: replace err by why, if QMP says. */
void qemu_explain_end(struct qemu_guest *q, struct colo_err *err);
extern const struct colo_vmstate_desc qemu_vm_vmsd;
/* Replace the device sections (blob from colo_vmstate_alloc); caller
 * holds lock once the threads run. */
void qemu_dev_set_blob(struct qemu_guest *q, uint8_t *blob, size_t len);
void qemu_dev_set_vmdesc(struct qemu_guest *q, uint8_t *json, size_t len);

/* qemu_relay.c */
/* Reading QEMU's migration until its RAM blocks are known (attach). */
int qemu_relay_begin(struct qemu_guest *q, int timeout_ms, struct colo_err *err);
/* Blocks named by QEMU's MEM_SIZE: made (first time) or checked. */
int qemu_relay_blocks(struct qemu_guest *q, const struct colo_ram_block_info *b, size_t n,
		      struct colo_err *err);
void *qemu_relay_main(void *arg);
void qemu_relay_free(struct qemu_guest *q);

/* qemu_vm.c */
int qemu_vm_paths(struct qemu_guest *q, const char *state_dir, struct colo_err *err);
int qemu_vm_parse_args(struct qemu_guest *q, struct colo_err *err);
/* Start QEMU as a COLO primary and accept its migration connection. */
int qemu_vm_start_primary(struct qemu_guest *q, struct colo_err *err);
/* The secondary: start the failover's QEMU ahead (standby) and learn the
 * VM's RAM blocks from it. */
int qemu_vm_probe(struct qemu_guest *q, struct colo_err *err);
/* Failover: QEMU on the committed RAM, loaded, running. */
int qemu_vm_failover(struct qemu_guest *q, struct colo_err *err);
/* The promoted node's own copy of the RAM again (the file is QEMU's).  On
 * the relay thread, before the x-colo migration fills it: the engine does
 * not touch the blocks until the guest is ready. */
int qemu_vm_unshare(struct qemu_guest *q, struct colo_err *err);
void qemu_vm_stop(struct qemu_guest *q);

#endif
