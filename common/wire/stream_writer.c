/*
 * stream_writer.c: writes the savevm v3 stream (DESIGN.md §3) into a
 * colo_buf, in the byte order and framing QEMU 7.2 uses, and collects the
 * vmdesc JSON of every device section for the VMDESCRIPTION trailer.
 */
#include "config.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "stream_int.h"

#define PAGE_SIZE 4096

void colo_sw_init(struct colo_stream_writer *w, struct colo_buf *out, bool with_vmdesc)
{
	memset(w, 0, sizeof(*w));
	w->out = out;
	w->footers = true;
	if (with_vmdesc) {
		w->vmdesc = json_object();
		json_object_set_new(w->vmdesc, "page_size", json_integer(PAGE_SIZE));
		json_object_set_new(w->vmdesc, "devices", json_array());
	}
}

void colo_sw_free(struct colo_stream_writer *w)
{
	json_decref(w->vmdesc);
	w->vmdesc = NULL;
}

void colo_sw_header(struct colo_stream_writer *w)
{
	colo_buf_put_be32(w->out, COLO_STREAM_MAGIC);
	colo_buf_put_be32(w->out, COLO_STREAM_VERSION);
}

int colo_sw_configuration(struct colo_stream_writer *w,
			  const struct colo_stream_config *c, struct colo_err *err)
{
	struct colo_stream_config copy = *c;

	copy.len = (uint32_t)strnlen(copy.name, sizeof(copy.name));
	colo_buf_put_u8(w->out, COLO_SEC_CONFIGURATION);
	return colo_vmstate_save(w->out, &colo__vmstate_configuration, &copy, NULL, err);
}

int colo_sw_section_begin(struct colo_stream_writer *w, enum colo_sec_type type,
			  uint32_t section_id, const char *idstr,
			  uint32_t instance_id, uint32_t version_id,
			  struct colo_err *err)
{
	colo_buf_put_u8(w->out, (uint8_t)type);
	colo_buf_put_be32(w->out, section_id);
	if (type == COLO_SEC_START || type == COLO_SEC_FULL) {
		size_t len = strlen(idstr);

		if (len > COLO_IDSTR_MAX)
			return colo_err_set(err, EINVAL, "section name '%.40s...' is "
					    "longer than %d bytes", idstr, COLO_IDSTR_MAX);
		colo_buf_put_u8(w->out, (uint8_t)len);
		colo_buf_put(w->out, idstr, len);
		colo_buf_put_be32(w->out, instance_id);
		colo_buf_put_be32(w->out, version_id);
	}
	w->in_section = true;
	w->section_id = section_id;
	return 0;
}

void colo_sw_section_end(struct colo_stream_writer *w)
{
	if (w->footers) {
		colo_buf_put_u8(w->out, COLO_SEC_FOOTER);
		colo_buf_put_be32(w->out, w->section_id);
	}
	w->in_section = false;
}

int colo_sw_device(struct colo_stream_writer *w, uint32_t section_id,
		   const char *idstr, uint32_t instance_id,
		   const struct colo_vmstate_desc *vmsd, void *opaque,
		   struct colo_err *err)
{
	json_t *dev = NULL;
	int r;

	r = colo_sw_section_begin(w, COLO_SEC_FULL, section_id, idstr, instance_id,
				  (uint32_t)vmsd->version_id, err);
	if (r)
		return r;
	if (w->vmdesc) {
		dev = json_object();
		json_object_set_new(dev, "name", json_string(idstr));
		json_object_set_new(dev, "instance_id", json_integer(instance_id));
	}
	r = colo_vmstate_save(w->out, vmsd, opaque, dev, err);
	if (r) {
		json_decref(dev);
		colo_err_prefix(err, "device '%s' instance %" PRIu32, idstr, instance_id);
		return r;
	}
	colo_sw_section_end(w);
	if (dev)
		json_array_append_new(json_object_get(w->vmdesc, "devices"), dev);
	return 0;
}

void colo_sw_command(struct colo_stream_writer *w, uint16_t cmd,
		     const void *data, uint16_t len)
{
	colo_buf_put_u8(w->out, COLO_SEC_COMMAND);
	colo_buf_put_be16(w->out, cmd);
	colo_buf_put_be16(w->out, len);
	colo_buf_put(w->out, data, len);
}

void colo_sw_open_return_path(struct colo_stream_writer *w)
{
	colo_sw_command(w, COLO_CMD_OPEN_RETURN_PATH, NULL, 0);
}

void colo_sw_ping(struct colo_stream_writer *w, uint32_t value)
{
	uint8_t b[4];

	colo_store_be32(b, value);
	colo_sw_command(w, COLO_CMD_PING, b, sizeof(b));
}

void colo_sw_enable_colo(struct colo_stream_writer *w)
{
	colo_sw_command(w, COLO_CMD_ENABLE_COLO, NULL, 0);
}

int colo_sw_packaged(struct colo_stream_writer *w, const void *pkg, size_t len,
		     struct colo_err *err)
{
	uint8_t b[4];

	if (len > COLO_PACKAGED_MAX)
		return colo_err_set(err, E2BIG, "PACKAGED data of %zu bytes exceeds "
				    "the %u-byte limit", len, COLO_PACKAGED_MAX);
	colo_store_be32(b, (uint32_t)len);
	colo_sw_command(w, COLO_CMD_PACKAGED, b, sizeof(b));
	colo_buf_put(w->out, pkg, len);
	return 0;
}

void colo_sw_eof(struct colo_stream_writer *w)
{
	colo_buf_put_u8(w->out, COLO_SEC_EOF);
}

int colo_sw_vmdesc(struct colo_stream_writer *w, struct colo_err *err)
{
	char *json;
	size_t len;

	if (!w->vmdesc)
		return colo_err_set(err, EINVAL, "this writer collects no vmdesc");
	/* Flags 0: `{"a": 1, "b": [2, 3]}`, QEMU's spacing. */
	json = json_dumps(w->vmdesc, 0);
	if (!json)
		return colo_err_set(err, ENOMEM, "out of memory for the vmdesc");
	len = strlen(json);
	if (len > COLO_VMDESC_MAX) {
		free(json);
		return colo_err_set(err, E2BIG, "vmdesc of %zu bytes exceeds the "
				    "%u-byte limit", len, COLO_VMDESC_MAX);
	}
	colo_buf_put_u8(w->out, COLO_SEC_VMDESC);
	colo_buf_put_be32(w->out, (uint32_t)len);
	colo_buf_put(w->out, json, len);
	free(json);
	return 0;
}

int colo_sw_device_raw(struct colo_stream_writer *w, uint32_t section_id,
		       const char *idstr, uint32_t instance_id, uint32_t version_id,
		       const void *payload, size_t len, struct colo_err *err)
{
	int r = colo_sw_section_begin(w, COLO_SEC_FULL, section_id, idstr, instance_id,
				      version_id, err);

	if (r)
		return r;
	colo_buf_put(w->out, payload, len);
	colo_sw_section_end(w);
	return 0;
}

int colo_sw_vmdesc_raw(struct colo_stream_writer *w, const char *json, size_t len,
		       struct colo_err *err)
{
	if (len > COLO_VMDESC_MAX)
		return colo_err_set(err, E2BIG, "vmdesc of %zu bytes exceeds the "
				    "%u-byte limit", len, COLO_VMDESC_MAX);
	colo_buf_put_u8(w->out, COLO_SEC_VMDESC);
	colo_buf_put_be32(w->out, (uint32_t)len);
	colo_buf_put(w->out, json, len);
	return 0;
}
