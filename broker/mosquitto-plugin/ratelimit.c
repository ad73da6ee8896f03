/*
 * Failed-authentication limiter per client address, the same rule as ems_access.ratelimit:
 * a sliding window per address; after `limit` failures within `window` seconds, further
 * attempts from that address are refused before any token is checked, until the oldest of
 * those failures leaves the window. Refused attempts are not counted, and a success
 * forgives nothing (else the holder of any token could interleave good logins between
 * guesses). IPv6 addresses count by their /64. At most `max_addresses` are remembered,
 * the one idle the longest evicted first. limit <= 0 disables the limiter.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ems_auth.h"

#define KEY_LEN 64

struct entry {
	char key[KEY_LEN];
	double *stamps; /* ring of the most recent failures, oldest at head */
	int head, count;
	struct entry *hnext;            /* bucket chain */
	struct entry *older, *newer;    /* order of last failure */
};

struct ems_limiter {
	int limit;
	double window;
	size_t max_addresses, size, nbuckets;
	struct entry **buckets;
	struct entry *oldest, *newest;
};

static uint32_t hash_key(const char *s)
{
	uint32_t h = 2166136261u;
	for(; *s; s++){
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

struct ems_limiter *ems_limiter_new(int limit, double window_s, size_t max_addresses)
{
	struct ems_limiter *rl = calloc(1, sizeof(*rl));
	if(rl == NULL) return NULL;
	rl->limit = limit;
	rl->window = window_s > 0 ? window_s : 60.0;
	rl->max_addresses = max_addresses ? max_addresses : 10000;
	rl->nbuckets = 1024;
	while(rl->nbuckets < rl->max_addresses) rl->nbuckets *= 2;
	rl->buckets = calloc(rl->nbuckets, sizeof(*rl->buckets));
	if(rl->buckets == NULL){
		free(rl);
		return NULL;
	}
	return rl;
}

static void unlink_order(struct ems_limiter *rl, struct entry *e)
{
	if(e->older) e->older->newer = e->newer; else rl->oldest = e->newer;
	if(e->newer) e->newer->older = e->older; else rl->newest = e->older;
	e->older = e->newer = NULL;
}

static void push_newest(struct ems_limiter *rl, struct entry *e)
{
	e->older = rl->newest;
	e->newer = NULL;
	if(rl->newest) rl->newest->newer = e; else rl->oldest = e;
	rl->newest = e;
}

static void remove_entry(struct ems_limiter *rl, struct entry *e)
{
	struct entry **link = &rl->buckets[hash_key(e->key) & (rl->nbuckets - 1)];
	while(*link && *link != e) link = &(*link)->hnext;
	if(*link) *link = e->hnext;
	unlink_order(rl, e);
	free(e->stamps);
	free(e);
	rl->size--;
}

void ems_limiter_free(struct ems_limiter *rl)
{
	if(rl == NULL) return;
	while(rl->oldest) remove_entry(rl, rl->oldest);
	free(rl->buckets);
	free(rl);
}

static struct entry *find(struct ems_limiter *rl, const char *key)
{
	struct entry *e = rl->buckets[hash_key(key) & (rl->nbuckets - 1)];
	for(; e; e = e->hnext) if(!strcmp(e->key, key)) return e;
	return NULL;
}

static void prune(struct ems_limiter *rl, struct entry *e, double now)
{
	double horizon = now - rl->window;
	while(e->count > 0 && e->stamps[e->head] <= horizon){
		e->head = (e->head + 1) % rl->limit;
		e->count--;
	}
}

static double blocked_for(struct ems_limiter *rl, struct entry *e, double now)
{
	double left;
	if(e->count < rl->limit) return 0.0;
	left = e->stamps[e->head] + rl->window - now;
	return left > 0 ? left : 0.0;
}

double ems_limiter_blocked(struct ems_limiter *rl, const char *key, double now_s)
{
	struct entry *e;
	if(rl == NULL || rl->limit <= 0) return 0.0;
	e = find(rl, key);
	if(e == NULL) return 0.0;
	prune(rl, e, now_s);
	if(e->count == 0){
		remove_entry(rl, e);
		return 0.0;
	}
	return blocked_for(rl, e, now_s);
}

double ems_limiter_failed(struct ems_limiter *rl, const char *key, double now_s)
{
	struct entry *e;
	if(rl == NULL || rl->limit <= 0) return 0.0;
	e = find(rl, key);
	if(e == NULL){
		size_t b = hash_key(key) & (rl->nbuckets - 1);
		e = calloc(1, sizeof(*e));
		if(e == NULL) return 0.0;
		e->stamps = calloc((size_t)rl->limit, sizeof(double));
		if(e->stamps == NULL){
			free(e);
			return 0.0;
		}
		snprintf(e->key, sizeof(e->key), "%s", key);
		e->hnext = rl->buckets[b];
		rl->buckets[b] = e;
		rl->size++;
	}else{
		unlink_order(rl, e);
	}
	push_newest(rl, e);
	prune(rl, e, now_s);
	if(e->count == rl->limit){ /* keep only the `limit` most recent */
		e->head = (e->head + 1) % rl->limit;
		e->count--;
	}
	e->stamps[(e->head + e->count) % rl->limit] = now_s;
	e->count++;
	while(rl->size > rl->max_addresses && rl->oldest != e) remove_entry(rl, rl->oldest);
	return blocked_for(rl, e, now_s);
}

void ems_limiter_key(const char *addr, char *out, size_t outlen)
{
	char text[INET6_ADDRSTRLEN + 8];
	unsigned char bytes[16];
	const char *start;
	size_t n;

	if(addr == NULL || addr[0] == '\0'){
		snprintf(out, outlen, "unknown");
		return;
	}
	start = addr;
	n = strlen(addr);
	if(addr[0] == '[' && strchr(addr, ']')){
		start = addr + 1;
		n = (size_t)(strchr(addr, ']') - start);
	}
	if(n >= sizeof(text)){
		snprintf(out, outlen, "%s", addr);
		return;
	}
	memcpy(text, start, n);
	text[n] = '\0';
	if(strchr(text, '%')) *strchr(text, '%') = '\0'; /* IPv6 zone index */

	if(inet_pton(AF_INET, text, bytes) == 1){
		snprintf(out, outlen, "%s", text);
	}else if(inet_pton(AF_INET6, text, bytes) == 1){
		static const unsigned char mapped[12] = {0,0,0,0,0,0,0,0,0,0,0xff,0xff};
		char formatted[INET6_ADDRSTRLEN];
		if(!memcmp(bytes, mapped, sizeof(mapped))){
			inet_ntop(AF_INET, bytes + 12, formatted, sizeof(formatted));
			snprintf(out, outlen, "%s", formatted);
		}else{
			memset(bytes + 8, 0, 8); /* one host usually owns a whole /64 */
			inet_ntop(AF_INET6, bytes, formatted, sizeof(formatted));
			snprintf(out, outlen, "%s/64", formatted);
		}
	}else{
		snprintf(out, outlen, "%s", addr);
	}
}
