/*
 * The access snapshot: every live token (hash, id, role, device, expiry) with its ordered
 * rules, written by the EMS supervisor from PostgreSQL (atomic write + rename) and parsed
 * here. Format, one record per line:
 *
 *   ems-access-snapshot 1
 *   token <sha256 hex> <token id> <role> <device id or -> <expiry in epoch ms or ->
 *   rule <read|write|readwrite|deny> <topic filter, rest of the line, \\ \n \r escaped>
 *   end <number of tokens>
 *
 * The trailing "end" line lets a truncated or hand-edited file be refused as a whole: a
 * partial snapshot would silently revoke whoever came after the cut.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ems_auth.h"

#define HEADER "ems-access-snapshot 1"
#define MAX_SNAPSHOT_BYTES (256u * 1024u * 1024u)

struct ems_device_entry {
	char *device_id;
	struct ems_device_entry *next;
};

/* Kept beside the token table, so "is this client id a device's?" is one lookup. */
struct ems_snapshot_devices {
	struct ems_device_entry **buckets;
	size_t nbuckets;
};

struct ems_snapshot_full {
	struct ems_snapshot pub;
	struct ems_snapshot_devices devices;
};

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;
	for(; *s; s++){
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static size_t digest_bucket(const unsigned char *digest, size_t nbuckets)
{
	uint32_t v = ((uint32_t)digest[0] << 24) | ((uint32_t)digest[1] << 16)
		| ((uint32_t)digest[2] << 8) | digest[3];
	return v & (nbuckets - 1);
}

static bool digest_equal(const unsigned char *a, const unsigned char *b)
{
	/* constant time: every byte is compared whatever the first difference */
	volatile unsigned char diff = 0;
	size_t i;
	for(i = 0; i < EMS_DIGEST_LEN; i++) diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

static int hexval(char c)
{
	if(c >= '0' && c <= '9') return c - '0';
	if(c >= 'a' && c <= 'f') return c - 'a' + 10;
	if(c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static int parse_digest(const char *hex, unsigned char *out)
{
	size_t i;
	if(strlen(hex) != EMS_DIGEST_LEN * 2) return -1;
	for(i = 0; i < EMS_DIGEST_LEN; i++){
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if(hi < 0 || lo < 0) return -1;
		out[i] = (unsigned char)((hi << 4) | lo);
	}
	return 0;
}

static int unescape(char *s)
{
	char *r = s, *w = s;
	while(*r){
		if(*r == '\\'){
			r++;
			if(*r == '\\') *w++ = '\\';
			else if(*r == 'n') *w++ = '\n';
			else if(*r == 'r') *w++ = '\r';
			else return -1;
			r++;
		}else{
			*w++ = *r++;
		}
	}
	*w = '\0';
	return 0;
}

void ems_token_ref(struct ems_token *token)
{
	token->refs++;
}

void ems_token_unref(struct ems_token *token)
{
	size_t i;
	if(token == NULL || --token->refs > 0) return;
	for(i = 0; i < token->nrules; i++) ems_rule_free(&token->rules[i]);
	free(token->rules);
	free(token->device_id);
	free(token);
}

bool ems_token_expired(const struct ems_token *token, int64_t now_ms)
{
	return token->expires_ms >= 0 && now_ms >= token->expires_ms;
}

bool ems_token_is_device(const struct ems_token *token)
{
	return strcmp(token->role, "device") == 0;
}

static int add_rule(struct ems_token *token, char *access_text, char *topic)
{
	unsigned access;
	struct ems_rule *grown;
	if(ems_access_parse(access_text, &access) || unescape(topic)) return -1;
	grown = realloc(token->rules, (token->nrules + 1) * sizeof(*grown));
	if(grown == NULL) return -1;
	token->rules = grown;
	if(ems_rule_init(&token->rules[token->nrules], topic, access)) return -1;
	token->nrules++;
	return 0;
}

static struct ems_token *new_token(char *fields[5])
{
	struct ems_token *token = calloc(1, sizeof(*token));
	char *end;
	if(token == NULL) return NULL;
	token->refs = 1;
	if(parse_digest(fields[0], token->digest)
			|| strlen(fields[1]) >= sizeof(token->id)
			|| strlen(fields[2]) >= sizeof(token->role)){
		free(token);
		return NULL;
	}
	strcpy(token->id, fields[1]);
	strcpy(token->role, fields[2]);
	if(strcmp(fields[3], "-")){
		token->device_id = strdup(fields[3]);
		if(token->device_id == NULL){
			free(token);
			return NULL;
		}
	}
	token->expires_ms = -1;
	if(strcmp(fields[4], "-")){
		errno = 0;
		token->expires_ms = strtoll(fields[4], &end, 10);
		if(errno || *end != '\0' || token->expires_ms < 0){
			ems_token_unref(token);
			return NULL;
		}
	}
	return token;
}

static size_t table_size(size_t n)
{
	size_t size = 16;
	while(size < 2 * n) size *= 2;
	return size;
}

static int index_tokens(struct ems_snapshot_full *full, struct ems_token *list)
{
	struct ems_snapshot *snap = &full->pub;
	struct ems_token *token, *next;
	snap->nbuckets = table_size(snap->ntokens);
	snap->buckets = calloc(snap->nbuckets, sizeof(*snap->buckets));
	full->devices.nbuckets = snap->nbuckets;
	full->devices.buckets = calloc(full->devices.nbuckets, sizeof(*full->devices.buckets));
	if(snap->buckets == NULL || full->devices.buckets == NULL) return -1;
	for(token = list; token; token = next){
		size_t b = digest_bucket(token->digest, snap->nbuckets);
		next = token->next;
		token->next = snap->buckets[b];
		snap->buckets[b] = token;
		if(token->device_id && ems_token_is_device(token)
				&& !ems_snapshot_has_device(snap, token->device_id)){
			struct ems_device_entry *entry = calloc(1, sizeof(*entry));
			size_t d = fnv1a(token->device_id) & (full->devices.nbuckets - 1);
			if(entry == NULL) return -1;
			entry->device_id = token->device_id; /* owned by the token */
			entry->next = full->devices.buckets[d];
			full->devices.buckets[d] = entry;
		}
	}
	return 0;
}

static void free_list(struct ems_token *list)
{
	struct ems_token *next;
	for(; list; list = next){
		next = list->next;
		ems_token_unref(list);
	}
}

struct ems_snapshot *ems_snapshot_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct ems_snapshot_full *full;
	struct ems_token *list = NULL, *current = NULL;
	char *buf, *line, *save = NULL;
	size_t lineno = 0, ntokens = 0;
	bool header = false, ended = false;

	buf = malloc(len + 1);
	full = calloc(1, sizeof(*full));
	if(buf == NULL || full == NULL){
		free(buf);
		free(full);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memcpy(buf, text, len);
	buf[len] = '\0';
	if(memchr(buf, '\0', len)){
		snprintf(err, errlen, "NUL byte in snapshot");
		goto fail;
	}

	for(line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)){
		lineno++;
		if(line[0] == '\0' || line[0] == '#') continue;
		if(ended){
			snprintf(err, errlen, "line %zu: content after 'end'", lineno);
			goto fail;
		}
		if(!header){
			if(strcmp(line, HEADER)){
				snprintf(err, errlen, "not an EMS access snapshot (expected '%s')", HEADER);
				goto fail;
			}
			header = true;
		}else if(!strncmp(line, "token ", 6)){
			char *fields[5], *p = line + 6, *tok_save = NULL;
			int i;
			for(i = 0; i < 5; i++){
				fields[i] = strtok_r(i == 0 ? p : NULL, " ", &tok_save);
				if(fields[i] == NULL) break;
			}
			if(i < 5 || strtok_r(NULL, " ", &tok_save) != NULL
					|| (current = new_token(fields)) == NULL){
				snprintf(err, errlen, "line %zu: malformed token record", lineno);
				goto fail;
			}
			current->next = list;
			list = current;
			ntokens++;
		}else if(!strncmp(line, "rule ", 5)){
			char *access = line + 5, *topic = strchr(access, ' ');
			if(current == NULL || topic == NULL){
				snprintf(err, errlen, "line %zu: rule outside a token", lineno);
				goto fail;
			}
			*topic++ = '\0';
			if(add_rule(current, access, topic)){
				snprintf(err, errlen, "line %zu: invalid rule", lineno);
				goto fail;
			}
		}else if(!strncmp(line, "end ", 4)){
			char *end;
			unsigned long long count = strtoull(line + 4, &end, 10);
			if(*end != '\0' || count != ntokens){
				snprintf(err, errlen, "line %zu: 'end' names %s tokens, found %zu",
						lineno, line + 4, ntokens);
				goto fail;
			}
			ended = true;
		}else{
			snprintf(err, errlen, "line %zu: unknown record", lineno);
			goto fail;
		}
	}
	if(!ended){
		snprintf(err, errlen, "snapshot is truncated (no 'end' line)");
		goto fail;
	}
	free(buf);
	full->pub.ntokens = ntokens;
	if(index_tokens(full, list)){
		snprintf(err, errlen, "out of memory");
		ems_snapshot_free(&full->pub);
		return NULL;
	}
	return &full->pub;

fail:
	free(buf);
	free_list(list);
	free(full);
	return NULL;
}

struct ems_snapshot *ems_snapshot_load(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *text;
	size_t got;
	struct ems_snapshot *snap;

	if(f == NULL){
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	if(fstat(fileno(f), &st) || st.st_size < 0 || (size_t)st.st_size > MAX_SNAPSHOT_BYTES){
		snprintf(err, errlen, "cannot size %s", path);
		fclose(f);
		return NULL;
	}
	text = malloc((size_t)st.st_size + 1);
	if(text == NULL){
		snprintf(err, errlen, "out of memory");
		fclose(f);
		return NULL;
	}
	got = fread(text, 1, (size_t)st.st_size, f);
	fclose(f);
	if(got != (size_t)st.st_size){
		snprintf(err, errlen, "short read of %s", path);
		free(text);
		return NULL;
	}
	snap = ems_snapshot_parse(text, got, err, errlen);
	free(text);
	return snap;
}

void ems_snapshot_free(struct ems_snapshot *snap)
{
	struct ems_snapshot_full *full = (struct ems_snapshot_full *)snap;
	size_t i;
	if(snap == NULL) return;
	if(full->devices.buckets){
		for(i = 0; i < full->devices.nbuckets; i++){
			struct ems_device_entry *entry = full->devices.buckets[i], *next;
			for(; entry; entry = next){
				next = entry->next;
				free(entry);
			}
		}
		free(full->devices.buckets);
	}
	if(snap->buckets){
		for(i = 0; i < snap->nbuckets; i++) free_list(snap->buckets[i]);
		free(snap->buckets);
	}
	free(full);
}

struct ems_token *ems_snapshot_find(const struct ems_snapshot *snap,
		const unsigned char digest[EMS_DIGEST_LEN])
{
	struct ems_token *token, *found = NULL;
	if(snap == NULL || snap->nbuckets == 0) return NULL;
	for(token = snap->buckets[digest_bucket(digest, snap->nbuckets)]; token; token = token->next){
		if(digest_equal(token->digest, digest)) found = token;
	}
	return found;
}

bool ems_snapshot_has_device(const struct ems_snapshot *snap, const char *device_id)
{
	const struct ems_snapshot_full *full = (const struct ems_snapshot_full *)snap;
	struct ems_device_entry *entry;
	if(snap == NULL || device_id == NULL || full->devices.buckets == NULL) return false;
	entry = full->devices.buckets[fnv1a(device_id) & (full->devices.nbuckets - 1)];
	for(; entry; entry = entry->next){
		if(!strcmp(entry->device_id, device_id)) return true;
	}
	return false;
}
