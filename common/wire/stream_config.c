/*
 * stream_config.c: the configuration section and the names of section
 * types and commands.
 *
 * QEMU writes `0x07` then vmstate "configuration": be32 len, the machine
 * type name, and subsections "configuration/target-page-bits" (only when
 * the page size is not the target's smallest), "configuration/capabilities"
 * (capabilities both sides must agree on, each `u8 len, name`) and
 * "configuration/uuid".  It has no footer and no vmdesc entry.
 */
#include "config.h"

#include <stddef.h>
#include <string.h>

#include "stream_int.h"

const char *colo_stream_section_type_name(unsigned type)
{
	switch (type) {
	case COLO_SEC_EOF: return "EOF";
	case COLO_SEC_START: return "START";
	case COLO_SEC_PART: return "PART";
	case COLO_SEC_END: return "END";
	case COLO_SEC_FULL: return "FULL";
	case COLO_SEC_SUBSECTION: return "SUBSECTION";
	case COLO_SEC_VMDESC: return "VMDESCRIPTION";
	case COLO_SEC_CONFIGURATION: return "CONFIGURATION";
	case COLO_SEC_COMMAND: return "COMMAND";
	case COLO_SEC_FOOTER: return "FOOTER";
	default: return "unknown";
	}
}

const char *colo_stream_command_name(unsigned cmd)
{
	switch (cmd) {
	case COLO_CMD_OPEN_RETURN_PATH: return "OPEN_RETURN_PATH";
	case COLO_CMD_PING: return "PING";
	case COLO_CMD_POSTCOPY_ADVISE: return "POSTCOPY_ADVISE";
	case COLO_CMD_POSTCOPY_LISTEN: return "POSTCOPY_LISTEN";
	case COLO_CMD_POSTCOPY_RUN: return "POSTCOPY_RUN";
	case COLO_CMD_POSTCOPY_RAM_DISCARD: return "POSTCOPY_RAM_DISCARD";
	case COLO_CMD_PACKAGED: return "PACKAGED";
	case COLO_CMD_ENABLE_COLO: return "ENABLE_COLO";
	case COLO_CMD_POSTCOPY_RESUME: return "POSTCOPY_RESUME";
	case COLO_CMD_RECV_BITMAP: return "RECV_BITMAP";
	default: return "unknown";
	}
}

int colo_stream_config_init(struct colo_stream_config *c, const char *name,
			    struct colo_err *err)
{
	size_t len = strlen(name);

	memset(c, 0, sizeof(*c));
	if (len > COLO_CONFIG_NAME_MAX)
		return colo_err_set(err, EINVAL, "configuration name '%.40s...' is "
				    "longer than %d bytes", name, COLO_CONFIG_NAME_MAX);
	memcpy(c->name, name, len);
	c->len = (uint32_t)len;
	return 0;
}

int colo_stream_config_add_cap(struct colo_stream_config *c, const char *cap,
			       struct colo_err *err)
{
	size_t len = strlen(cap);

	if (c->caps_count >= COLO_CONFIG_CAPS_MAX)
		return colo_err_set(err, E2BIG, "more than %d capabilities",
				    COLO_CONFIG_CAPS_MAX);
	if (len == 0 || len > 255)
		return colo_err_set(err, EINVAL, "capability name must be 1 to 255 bytes");
	c->caps[c->caps_count].len = (uint8_t)len;
	memcpy(c->caps[c->caps_count].str, cap, len + 1);
	c->caps_count++;
	return 0;
}

bool colo_stream_config_has_cap(const struct colo_stream_config *c, const char *cap)
{
	for (uint32_t i = 0; i < c->caps_count; i++)
		if (strcmp(c->caps[i].str, cap) == 0)
			return true;
	return false;
}

/* One capability: u8 length, then the name (QEMU's vmstate_info_capability). */
static int get_capability(struct colo_in *in, void *pv, size_t size,
			  const struct colo_vmstate_field *f, struct colo_err *err)
{
	struct colo_stream_capability *cap = pv;
	const uint8_t *p;
	uint8_t len;
	int r;

	(void)size; (void)f; (void)err;
	r = colo_in_u8(in, &len);
	if (r == 0)
		r = colo_in_bytes(in, &p, len);
	if (r)
		return r;
	cap->len = len;
	memcpy(cap->str, p, len);
	cap->str[len] = '\0';
	return 0;
}

static void put_capability(struct colo_buf *out, const void *pv, size_t size,
			   const struct colo_vmstate_field *f)
{
	const struct colo_stream_capability *cap = pv;

	(void)size; (void)f;
	colo_buf_put_u8(out, cap->len);
	colo_buf_put(out, cap->str, cap->len);
}

static const struct colo_vmstate_info info_capability = {
	.name = "capability", .get = get_capability, .put = put_capability,
};

static bool page_bits_needed(void *opaque)
{
	return ((struct colo_stream_config *)opaque)->has_page_bits;
}

static int page_bits_post_load(void *opaque, int version_id, struct colo_err *err)
{
	struct colo_stream_config *c = opaque;

	(void)version_id; (void)err;
	c->has_page_bits = true;
	return 0;
}

static const struct colo_vmstate_desc vmstate_target_page_bits = {
	.name = "configuration/target-page-bits",
	.version_id = 1,
	.minimum_version_id = 1,
	.needed = page_bits_needed,
	.post_load = page_bits_post_load,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT32(target_page_bits, struct colo_stream_config),
		COLO_VMSTATE_END,
	},
};

static bool caps_needed(void *opaque)
{
	return ((struct colo_stream_config *)opaque)->caps_count > 0;
}

static const struct colo_vmstate_desc vmstate_capabilities = {
	.name = "configuration/capabilities",
	.version_id = 1,
	.minimum_version_id = 1,
	.needed = caps_needed,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT32(caps_count, struct colo_stream_config),
		COLO_VMSTATE_VARRAY_UINT32(caps, struct colo_stream_config, caps_count,
					   0, info_capability,
					   struct colo_stream_capability),
		COLO_VMSTATE_END,
	},
};

static bool uuid_needed(void *opaque)
{
	return ((struct colo_stream_config *)opaque)->has_uuid;
}

static int uuid_post_load(void *opaque, int version_id, struct colo_err *err)
{
	(void)version_id; (void)err;
	((struct colo_stream_config *)opaque)->has_uuid = true;
	return 0;
}

static const struct colo_vmstate_desc vmstate_uuid = {
	.name = "configuration/uuid",
	.version_id = 1,
	.minimum_version_id = 1,
	.needed = uuid_needed,
	.post_load = uuid_post_load,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT8_ARRAY(uuid, struct colo_stream_config, 16),
		COLO_VMSTATE_END,
	},
};

static int config_pre_load(void *opaque, struct colo_err *err)
{
	struct colo_stream_config *c = opaque;

	(void)err;
	memset(c, 0, sizeof(*c));
	return 0;
}

static int config_post_load(void *opaque, int version_id, struct colo_err *err)
{
	struct colo_stream_config *c = opaque;

	(void)version_id; (void)err;
	c->name[c->len] = '\0';
	return 0;
}

const struct colo_vmstate_desc colo__vmstate_configuration = {
	.name = "configuration",
	.version_id = 1,
	.minimum_version_id = 0,
	.pre_load = config_pre_load,
	.post_load = config_post_load,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT32(len, struct colo_stream_config),
		/* The name is a char array: declared by hand, length in `len`. */
		{ .name = "name", .cap = COLO_CONFIG_NAME_MAX,
		  .info = &colo_vmstate_info_buffer, .flags = COLO_VMS_VBUFFER,
		  .offset = offsetof(struct colo_stream_config, name),
		  .size_offset = offsetof(struct colo_stream_config, len) },
		COLO_VMSTATE_END,
	},
	.subsections = (const struct colo_vmstate_desc *const[]) {
		&vmstate_target_page_bits,
		&vmstate_capabilities,
		&vmstate_uuid,
		NULL,
	},
};
