/*
 * EMS token authentication and ACLs for Mosquitto 2.0 (plugin API v5).
 *
 * The pure parts (acl.c, snapshot.c, ratelimit.c) include only this header, so tests can
 * build them into a small shared library and compare them with the Python engine
 * (ems_access.rules) without a broker; plugin.c is the only file that talks to Mosquitto.
 */
#ifndef EMS_AUTH_H
#define EMS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- ACL rules (acl.c): a port of ems_access.rules and ems_access.topics ---------------- */

enum {
	EMS_ACCESS_READ = 1,
	EMS_ACCESS_WRITE = 2,
	EMS_ACCESS_READWRITE = 3,
	EMS_ACCESS_DENY = 4,
};

struct ems_rule {
	char *topic;      /* the filter as stored, placeholders unresolved */
	char **levels;    /* topic split on '/' (pointers into one buffer) */
	size_t nlevels;
	unsigned access;  /* EMS_ACCESS_* */
	bool placeholders;
};

/* Returns 0, or -1 if the topic is not a valid rule filter or access is unknown. */
int ems_rule_init(struct ems_rule *rule, const char *topic, unsigned access);
void ems_rule_free(struct ems_rule *rule);
int ems_access_parse(const char *text, unsigned *access);

bool ems_valid_topic_name(const char *topic);
bool ems_valid_filter(const char *filter, bool placeholders);

/* Principal.can("read"/"write", topic, client_id=, username=) without the expiry check.
 * The caller substitutes the token's device id for a missing client id or username, as
 * Principal._identity does; a NULL value left over makes rules that need it inapplicable. */
bool ems_can(const struct ems_rule *rules, size_t nrules, bool write, const char *topic,
		const char *client_id, const char *username);
/* Principal.can_subscribe(filter, ...), same conventions. */
bool ems_can_subscribe(const struct ems_rule *rules, size_t nrules, const char *filter,
		const char *client_id, const char *username);

/* ---- The access snapshot (snapshot.c) ---------------------------------------------------- */

#define EMS_DIGEST_LEN 32

struct ems_token {
	unsigned char digest[EMS_DIGEST_LEN]; /* sha256 of the plaintext token */
	char id[48];
	char role[16];
	char *device_id;        /* NULL unless bound to a device */
	int64_t expires_ms;     /* Unix epoch milliseconds; -1: never */
	struct ems_rule *rules;
	size_t nrules;
	int refs;               /* the snapshot holds one, every client using it another */
	struct ems_token *next; /* bucket chain */
};

struct ems_snapshot {
	struct ems_token **buckets;
	size_t nbuckets;
	size_t ntokens;
};

/* Parse a snapshot file; NULL on error, with a message in err. */
struct ems_snapshot *ems_snapshot_load(const char *path, char *err, size_t errlen);
struct ems_snapshot *ems_snapshot_parse(const char *text, size_t len, char *err, size_t errlen);
void ems_snapshot_free(struct ems_snapshot *snap);
/* The token with this digest (compared in constant time), or NULL. */
struct ems_token *ems_snapshot_find(const struct ems_snapshot *snap,
		const unsigned char digest[EMS_DIGEST_LEN]);
/* Whether some device token is bound to this device id. */
bool ems_snapshot_has_device(const struct ems_snapshot *snap, const char *device_id);
void ems_token_ref(struct ems_token *token);
void ems_token_unref(struct ems_token *token);
bool ems_token_expired(const struct ems_token *token, int64_t now_ms);
bool ems_token_is_device(const struct ems_token *token);

/* ---- Failed-authentication limiter (ratelimit.c): ems_access.ratelimit in C ------------- */

struct ems_limiter;

struct ems_limiter *ems_limiter_new(int limit, double window_s, size_t max_addresses);
void ems_limiter_free(struct ems_limiter *limiter);
/* The key an address is counted under: IPv4 as is, IPv6 by its /64. */
void ems_limiter_key(const char *addr, char *out, size_t outlen);
/* Seconds until the key may try again (0: now). */
double ems_limiter_blocked(struct ems_limiter *limiter, const char *key, double now_s);
/* Record a failure; returns how long the key is now blocked (0: not). */
double ems_limiter_failed(struct ems_limiter *limiter, const char *key, double now_s);

#endif
