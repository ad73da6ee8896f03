/*
 * Mosquitto 2.0 plugin (API v5): EMS tokens as MQTT passwords, per-token ordered ACLs.
 *
 * Why a plugin: Mosquitto's password file and dynamic-security plugin key on the username
 * and need a PBKDF2 hash of the password, while EMS's username is free text and EMS
 * stores only sha256(token). Here the password is hashed and looked up in an access
 * snapshot that the EMS supervisor keeps in sync with PostgreSQL (snapshot.c); ACL checks
 * run the same rules as ems_access.Principal (acl.c). Everything runs on Mosquitto's one
 * thread, so no locking is needed.
 *
 * Life of a client entry: BASIC_AUTH creates it (LIVE); DISCONNECT marks it CLOSING (it
 * must outlive the event, because Mosquitto ACL-checks the last will right after it), or
 * OFFLINE for a persistent session (clean_session = 0): Mosquitto keeps that context and
 * read-checks every message it queues for it, so the entry must keep answering with the
 * session's token until the client logs in again (which replaces it) or the token is revoked
 * or expires (which drops it, and with it the queued deliveries); a revoked or expired token
 * marks a live entry KICKED before the kick; TICK purges CLOSING and KICKED entries.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/evp.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#if defined(__has_include)
#  if __has_include(<mosquitto.h>)
#    include <mosquitto.h>
#  endif
#endif

#include "ems_auth.h"

/* mosquitto.h (libmosquitto-dev) is not needed for these stable values. */
#ifndef LIBMOSQUITTO_MAJOR
enum {
	MOSQ_ERR_SUCCESS = 0,
	MOSQ_ERR_NOMEM = 1,
	MOSQ_ERR_INVAL = 3,
	MOSQ_ERR_AUTH = 11,
	MOSQ_ERR_ACL_DENIED = 12,
	MOSQ_ERR_PLUGIN_DEFER = 17,
};
#define MOSQ_LOG_INFO (1 << 0)
#define MOSQ_LOG_NOTICE (1 << 1)
#define MOSQ_LOG_WARNING (1 << 2)
#define MOSQ_LOG_ERR (1 << 3)
#define MOSQ_LOG_DEBUG (1 << 4)
#endif

/* Built with -fvisibility=hidden: only the entry points Mosquitto looks up are exported. */
#define EMS_EXPORT __attribute__((visibility("default")))
#define TAG "ems-auth: "
#define BUCKETS 16384
#define SHOWN_LEN 96

enum client_state { CLIENT_LIVE, CLIENT_OFFLINE, CLIENT_CLOSING, CLIENT_KICKED };

struct client {
	struct mosquitto *ctx;
	char *client_id;
	char *username;
	struct ems_token *token;
	enum client_state state;
	bool revoked;
	struct client *ctx_next, *id_next;
	struct client *prev, *next;
};

struct state {
	mosquitto_plugin_id_t *identifier;
	char *snapshot_path;
	struct ems_snapshot *snap;
	dev_t snap_dev;
	ino_t snap_ino;
	struct timespec snap_mtime;
	off_t snap_size;
	bool stat_failed;
	long check_interval_ms;
	double last_check;
	struct ems_limiter *limiter;
	struct client *by_ctx[BUCKETS];
	struct client *by_id[BUCKETS];
	struct client *all;
	size_t nclients;
};

/* ---- time ---------------------------------------------------------------------------- */

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t epoch_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- client table -------------------------------------------------------------------- */

static size_t ctx_bucket(const struct mosquitto *ctx)
{
	uintptr_t v = (uintptr_t)ctx;
	v ^= v >> 17;
	v *= 0x9E3779B1u;
	return (size_t)(v % BUCKETS);
}

static size_t id_bucket(const char *id)
{
	uint32_t h = 2166136261u;
	for(; *id; id++){
		h ^= (unsigned char)*id;
		h *= 16777619u;
	}
	return h % BUCKETS;
}

static struct client *client_find(struct state *st, const struct mosquitto *ctx)
{
	struct client *c = st->by_ctx[ctx_bucket(ctx)];
	for(; c; c = c->ctx_next) if(c->ctx == ctx) return c;
	return NULL;
}

static struct client *client_live_by_id(struct state *st, const char *id)
{
	struct client *c;
	if(id == NULL) return NULL;
	for(c = st->by_id[id_bucket(id)]; c; c = c->id_next){
		if(c->state == CLIENT_LIVE && !strcmp(c->client_id, id)) return c;
	}
	return NULL;
}

static void client_remove(struct state *st, struct client *c)
{
	struct client **link = &st->by_ctx[ctx_bucket(c->ctx)];
	while(*link && *link != c) link = &(*link)->ctx_next;
	if(*link) *link = c->ctx_next;
	link = &st->by_id[id_bucket(c->client_id)];
	while(*link && *link != c) link = &(*link)->id_next;
	if(*link) *link = c->id_next;
	if(c->prev) c->prev->next = c->next; else st->all = c->next;
	if(c->next) c->next->prev = c->prev;
	ems_token_unref(c->token);
	free(c->client_id);
	free(c->username);
	free(c);
	st->nclients--;
}

static int client_add(struct state *st, struct mosquitto *ctx, const char *id,
		const char *username, struct ems_token *token)
{
	struct client *c, *old = client_find(st, ctx);
	size_t b;
	/* A context address can be reused once Mosquitto frees it: the new login wins. */
	if(old) client_remove(st, old);
	c = calloc(1, sizeof(*c));
	if(c == NULL) return -1;
	c->client_id = strdup(id ? id : "");
	c->username = username ? strdup(username) : NULL;
	if(c->client_id == NULL || (username && c->username == NULL)){
		free(c->client_id);
		free(c->username);
		free(c);
		return -1;
	}
	c->ctx = ctx;
	c->token = token;
	ems_token_ref(token);
	c->state = CLIENT_LIVE;
	b = ctx_bucket(ctx);
	c->ctx_next = st->by_ctx[b];
	st->by_ctx[b] = c;
	b = id_bucket(c->client_id);
	c->id_next = st->by_id[b];
	st->by_id[b] = c;
	c->next = st->all;
	if(st->all) st->all->prev = c;
	st->all = c;
	st->nclients++;
	return 0;
}

/* A persistent session's new login supersedes the entry of its previous, offline context
 * (Mosquitto moves the session into the new context and frees the old one). */
static void client_forget_offline(struct state *st, const char *id, const struct mosquitto *keep)
{
	struct client *c, *next;
	if(id == NULL) return;
	for(c = st->by_id[id_bucket(id)]; c; c = next){
		next = c->id_next;
		if(c->state == CLIENT_OFFLINE && c->ctx != keep && !strcmp(c->client_id, id)){
			client_remove(st, c);
		}
	}
}

/* ---- logging without secrets --------------------------------------------------------- */

static void sha256(const char *text, unsigned char out[EMS_DIGEST_LEN])
{
	unsigned int len = EMS_DIGEST_LEN;
	if(!EVP_Digest(text, strlen(text), out, &len, EVP_sha256(), NULL)){
		memset(out, 0, EMS_DIGEST_LEN);
	}
}

/* Free-text fields (username, client id) may hold a pasted token: never log one. */
static const char *shown(struct state *st, const char *value, char *buf, size_t len)
{
	unsigned char digest[EMS_DIGEST_LEN];
	if(value == NULL) return "(none)";
	if(!strncmp(value, "ems_", 4) && strlen(value) > 20) return "ems_<redacted>";
	if(strlen(value) >= 16){
		sha256(value, digest);
		if(ems_snapshot_find(st->snap, digest)) return "<redacted>";
	}
	snprintf(buf, len, "%s", value);
	return buf;
}

static void log_client(struct state *st, int level, const char *what, const char *id,
		const char *username, const char *addr, const char *reason)
{
	char b1[SHOWN_LEN], b2[SHOWN_LEN];
	mosquitto_log_printf(level, TAG "%s (client id '%s', username '%s', peer %s)%s%s", what,
			shown(st, id, b1, sizeof(b1)), shown(st, username, b2, sizeof(b2)),
			addr ? addr : "unknown", reason ? ": " : "", reason ? reason : "");
}

/* ---- snapshot reloads and enforcement ------------------------------------------------ */

/* "<snapshot>.loaded" names the file version in force (inode, mtime, size), so the
 * supervisor and tests can tell when a change has reached the broker. */
static void write_loaded_marker(struct state *st)
{
	char path[4096], tmp[4200];
	FILE *f;
	snprintf(path, sizeof(path), "%s.loaded", st->snapshot_path);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if(f == NULL) return;
	fprintf(f, "%llu %lld %ld %lld\n", (unsigned long long)st->snap_ino,
			(long long)st->snap_mtime.tv_sec, (long)st->snap_mtime.tv_nsec,
			(long long)st->snap_size);
	if(fclose(f) == 0) rename(tmp, path);
}

static int load_snapshot(struct state *st, bool initial)
{
	struct stat sb;
	struct ems_snapshot *snap;
	struct client *c;
	char err[256];

	if(stat(st->snapshot_path, &sb)){
		if(!st->stat_failed || initial){
			mosquitto_log_printf(MOSQ_LOG_ERR, TAG "cannot stat access snapshot %s: %s;"
					" keeping the last one", st->snapshot_path, strerror(errno));
		}
		st->stat_failed = true;
		return -1;
	}
	st->stat_failed = false;
	if(!initial && sb.st_ino == st->snap_ino && sb.st_dev == st->snap_dev
			&& sb.st_size == st->snap_size
			&& sb.st_mtim.tv_sec == st->snap_mtime.tv_sec
			&& sb.st_mtim.tv_nsec == st->snap_mtime.tv_nsec){
		return 0;
	}
	st->snap_dev = sb.st_dev;
	st->snap_ino = sb.st_ino;
	st->snap_size = sb.st_size;
	st->snap_mtime = sb.st_mtim;
	snap = ems_snapshot_load(st->snapshot_path, err, sizeof(err));
	if(snap == NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR, TAG "refusing access snapshot %s: %s;"
				" keeping the last one", st->snapshot_path, err);
		return -1;
	}
	/* Rebind every client to its token's new record: ACL edits apply to the next check. */
	for(c = st->all; c; c = c->next){
		struct ems_token *fresh = ems_snapshot_find(snap, c->token->digest);
		if(fresh){
			ems_token_ref(fresh);
			ems_token_unref(c->token);
			c->token = fresh;
		}else if(c->state == CLIENT_LIVE || c->state == CLIENT_OFFLINE){
			c->revoked = true;
		}
	}
	ems_snapshot_free(st->snap);
	st->snap = snap;
	write_loaded_marker(st);
	mosquitto_log_printf(initial ? MOSQ_LOG_NOTICE : MOSQ_LOG_INFO,
			TAG "access snapshot loaded: %zu token(s)", snap->ntokens);
	return 0;
}

static void enforce(struct state *st)
{
	int64_t now = epoch_ms();
	struct client *c, *next;
	char **kick = NULL;
	size_t nkick = 0, i;

	for(c = st->all; c; c = c->next){
		if(c->state != CLIENT_LIVE) continue;
		if(!c->revoked && !ems_token_expired(c->token, now)) continue;
		char **grown = realloc(kick, (nkick + 1) * sizeof(*kick));
		if(grown == NULL) break;
		kick = grown;
		kick[nkick] = strdup(c->client_id);
		if(kick[nkick] == NULL) break;
		nkick++;
		c->state = CLIENT_KICKED;
		mosquitto_log_printf(MOSQ_LOG_NOTICE, TAG "closing the session of token %s: %s",
				c->token->id, c->revoked ? "token revoked or rotated" : "token expired");
	}
	/* Kicks run the DISCONNECT callback and the will's ACL check synchronously. */
	for(i = 0; i < nkick; i++){
		mosquitto_kick_client_by_clientid(kick[i], true);
		free(kick[i]);
	}
	free(kick);
	for(c = st->all; c; c = next){
		next = c->next;
		if(c->state == CLIENT_LIVE) continue;
		if(c->state == CLIENT_OFFLINE && !c->revoked && !ems_token_expired(c->token, now)){
			continue;
		}
		client_remove(st, c);
	}
}

/* ---- callbacks ----------------------------------------------------------------------- */

static int refuse(struct state *st, const char *key, const char *id, const char *username,
		const char *addr, const char *reason, bool counts)
{
	double blocked = 0.0;
	log_client(st, MOSQ_LOG_NOTICE, "refused MQTT connection", id, username, addr, reason);
	if(counts) blocked = ems_limiter_failed(st->limiter, key, mono_s());
	if(blocked > 0){
		mosquitto_log_printf(MOSQ_LOG_WARNING, TAG "auth failures: %s reached the limit;"
				" refusing it for %.1f s", key, blocked);
	}
	return MOSQ_ERR_AUTH;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct state *st = userdata;
	struct mosquitto_evt_basic_auth *ev = event_data;
	const char *addr = mosquitto_client_address(ev->client);
	const char *id = mosquitto_client_id(ev->client);
	const char *username = ev->username;
	unsigned char digest[EMS_DIGEST_LEN];
	struct ems_token *token;
	struct client *holder;
	char key[80], reason[160];
	double wait;
	(void)event;

	ems_limiter_key(addr, key, sizeof(key));
	wait = ems_limiter_blocked(st->limiter, key, mono_s());
	if(wait > 0){
		snprintf(reason, sizeof(reason), "rate limited, retry after %.1f s", wait);
		return refuse(st, key, id, username, addr, reason, false);
	}
	if(ev->password == NULL || ev->password[0] == '\0'){
		return refuse(st, key, id, username, addr, "no token given as password", true);
	}
	sha256(ev->password, digest);
	token = ems_snapshot_find(st->snap, digest);
	if(token == NULL && load_snapshot(st, false) == 0){
		/* A token created a moment ago may be in a snapshot the next tick would load. */
		token = ems_snapshot_find(st->snap, digest);
	}
	if(token == NULL || ems_token_expired(token, epoch_ms())){
		return refuse(st, key, id, username, addr, "unknown, revoked or expired token", true);
	}
	if(ems_token_is_device(token)){
		if(token->device_id == NULL || id == NULL || username == NULL
				|| strcmp(id, token->device_id) || strcmp(username, token->device_id)){
			snprintf(reason, sizeof(reason),
					"device token of '%s' needs that id as client id and username",
					token->device_id ? token->device_id : "?");
			return refuse(st, key, id, username, addr, reason, true);
		}
	}else if(ems_snapshot_has_device(st->snap, id)){
		/* Taking a device's client id would kick the device or steal its queued commands. */
		return refuse(st, key, id, username, addr,
				"client id belongs to a device; only its device token may use it", false);
	}
	holder = client_live_by_id(st, id);
	if(holder && holder->ctx != ev->client
			&& memcmp(holder->token->digest, token->digest, EMS_DIGEST_LEN)
			&& !ems_token_is_device(token)){
		return refuse(st, key, id, username, addr,
				"client id in use by another token's live session", false);
	}
	if(client_add(st, ev->client, id, username, token)){
		mosquitto_log_printf(MOSQ_LOG_ERR, TAG "out of memory");
		return MOSQ_ERR_AUTH;
	}
	client_forget_offline(st, id, ev->client);
	{
		char what[128];
		snprintf(what, sizeof(what), "MQTT connection accepted for %s token %s",
				token->role, token->id);
		log_client(st, MOSQ_LOG_INFO, what, id, username, addr, NULL);
	}
	return MOSQ_ERR_SUCCESS;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct state *st = userdata;
	struct mosquitto_evt_acl_check *ev = event_data;
	struct client *c = client_find(st, ev->client);
	const char *topic = ev->topic, *client_id, *username;
	struct ems_token *token;
	bool allowed = false;
	(void)event;

	if(c == NULL || topic == NULL) return MOSQ_ERR_ACL_DENIED;
	token = c->token;
	if(c->state == CLIENT_KICKED){
		/* Only the last will of a kicked session, under the rules it had. */
		if(ev->access != MOSQ_ACL_WRITE) return MOSQ_ERR_ACL_DENIED;
	}else if(ems_token_expired(token, epoch_ms())){
		return MOSQ_ERR_ACL_DENIED;
	}
	/* Principal._identity: the device id stands in for a missing client id or username. */
	client_id = c->client_id[0] ? c->client_id : token->device_id;
	username = c->username ? c->username : token->device_id;
	switch(ev->access){
		case MOSQ_ACL_UNSUBSCRIBE:
			return MOSQ_ERR_SUCCESS;
		case MOSQ_ACL_SUBSCRIBE:
			if(!strncmp(topic, "$share/", 7)){
				/* A shared subscription reads what its filter reads. */
				const char *rest = strchr(topic + 7, '/');
				if(rest == NULL) return MOSQ_ERR_ACL_DENIED;
				topic = rest + 1;
			}
			allowed = ems_can_subscribe(token->rules, token->nrules, topic, client_id, username);
			break;
		case MOSQ_ACL_READ:
			return ems_can(token->rules, token->nrules, false, topic, client_id, username)
				? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
		case MOSQ_ACL_WRITE:
			allowed = ems_can(token->rules, token->nrules, true, topic, client_id, username);
			break;
		default:
			return MOSQ_ERR_ACL_DENIED;
	}
	if(!allowed){
		char what[160], b1[SHOWN_LEN];
		snprintf(what, sizeof(what), "denied %s of '%s'",
				ev->access == MOSQ_ACL_WRITE ? "publish" : "subscribe",
				shown(st, ev->topic, b1, sizeof(b1)));
		log_client(st, MOSQ_LOG_INFO, what, c->client_id, c->username,
				mosquitto_client_address(ev->client), NULL);
		return MOSQ_ERR_ACL_DENIED;
	}
	return MOSQ_ERR_SUCCESS;
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct state *st = userdata;
	struct mosquitto_evt_disconnect *ev = event_data;
	struct client *c = client_find(st, ev->client);
	(void)event;
	if(c && c->state == CLIENT_LIVE){
		struct client *successor = client_live_by_id(st, c->client_id);
		/* Taken over by a new login: the session lives on in the new context, not here. */
		bool moved = successor != NULL && successor != c;
		c->state = (mosquitto_client_clean_session(ev->client) || moved)
			? CLIENT_CLOSING : CLIENT_OFFLINE;
	}
	return MOSQ_ERR_SUCCESS;
}

static int on_tick(int event, void *event_data, void *userdata)
{
	struct state *st = userdata;
	double now = mono_s();
	(void)event;
	(void)event_data;
	if((now - st->last_check) * 1000.0 < (double)st->check_interval_ms) return MOSQ_ERR_SUCCESS;
	st->last_check = now;
	load_snapshot(st, false);
	enforce(st);
	return MOSQ_ERR_SUCCESS;
}

/* ---- plugin entry points ------------------------------------------------------------- */

EMS_EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;
	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

static long option_long(const char *value, long fallback, long min, long max)
{
	char *end;
	long v;
	errno = 0;
	v = strtol(value, &end, 10);
	if(errno || *end != '\0' || v < min || v > max) return fallback;
	return v;
}

static void state_free(struct state *st)
{
	if(st == NULL) return;
	while(st->all) client_remove(st, st->all);
	ems_snapshot_free(st->snap);
	ems_limiter_free(st->limiter);
	free(st->snapshot_path);
	free(st);
}

EMS_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *options, int option_count)
{
	struct state *st = calloc(1, sizeof(*st));
	long fail_limit = 10, fail_window = 60;
	int i;

	if(st == NULL) return MOSQ_ERR_NOMEM;
	st->identifier = identifier;
	st->check_interval_ms = 100;
	for(i = 0; i < option_count; i++){
		const char *k = options[i].key, *v = options[i].value;
		if(!strcmp(k, "snapshot")){
			free(st->snapshot_path);
			st->snapshot_path = strdup(v);
		}else if(!strcmp(k, "fail_limit")){
			fail_limit = option_long(v, fail_limit, -1, 1000000);
		}else if(!strcmp(k, "fail_window")){
			fail_window = option_long(v, fail_window, 1, 86400 * 365);
		}else if(!strcmp(k, "check_interval_ms")){
			st->check_interval_ms = option_long(v, st->check_interval_ms, 1, 60000);
		}
	}
	if(st->snapshot_path == NULL){
		mosquitto_log_printf(MOSQ_LOG_ERR, TAG "plugin_opt_snapshot is required");
		state_free(st);
		return MOSQ_ERR_INVAL;
	}
	st->limiter = ems_limiter_new((int)fail_limit, (double)fail_window, 10000);
	if(st->limiter == NULL){
		state_free(st);
		return MOSQ_ERR_NOMEM;
	}
	if(load_snapshot(st, true)){
		state_free(st);
		return MOSQ_ERR_INVAL;
	}
	st->last_check = mono_s();
	if(mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, st)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, st)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, st)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, st)){
		mosquitto_log_printf(MOSQ_LOG_ERR, TAG "cannot register callbacks");
		state_free(st);
		return MOSQ_ERR_INVAL;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, TAG "EMS token auth ready (failed-auth limit %ld per"
			" %ld s per address)", fail_limit, fail_window);
	*userdata = st;
	return MOSQ_ERR_SUCCESS;
}

EMS_EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	struct state *st = userdata;
	(void)options;
	(void)option_count;
	if(st == NULL) return MOSQ_ERR_SUCCESS;
	mosquitto_callback_unregister(st->identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(st->identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(st->identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	mosquitto_callback_unregister(st->identifier, MOSQ_EVT_TICK, on_tick, NULL);
	state_free(st);
	return MOSQ_ERR_SUCCESS;
}
