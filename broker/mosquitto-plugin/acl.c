/*
 * Topic-filter algebra and ordered ACL rules: a line-by-line port of ems_access.topics and
 * ems_access.rules, so Mosquitto and the built-in broker decide every case alike. The
 * tests compare this file with the Python engine on many generated rules and topics.
 *
 * Topics are compared as (pointer, length) slices of their levels; nothing is copied on
 * the hot path unless a topic has more than INLINE_LEVELS levels.
 */
#include <stdlib.h>
#include <string.h>

#include "ems_auth.h"

#define MAX_TOPIC_BYTES 65535
#define INLINE_LEVELS 32

struct slice {
	const char *p;
	size_t n;
};

struct levels {
	struct slice *v;
	size_t n;
	struct slice inline_[INLINE_LEVELS];
};

static void levels_release(struct levels *l)
{
	if(l->v != l->inline_) free(l->v);
	l->v = NULL;
}

static int levels_alloc(struct levels *l, size_t n)
{
	l->n = n;
	if(n <= INLINE_LEVELS){
		l->v = l->inline_;
		return 0;
	}
	l->v = malloc(n * sizeof(*l->v));
	return l->v ? 0 : -1;
}

static int split(const char *s, struct levels *out)
{
	size_t n = 1, i = 0;
	const char *c, *start = s;
	for(c = s; *c; c++) if(*c == '/') n++;
	if(levels_alloc(out, n)) return -1;
	for(c = s; ; c++){
		if(*c == '/' || *c == '\0'){
			out->v[i].p = start;
			out->v[i].n = (size_t)(c - start);
			i++;
			start = c + 1;
			if(*c == '\0') break;
		}
	}
	return 0;
}

static bool is_single(const struct slice *s) { return s->n == 1 && s->p[0] == '+'; }
static bool is_multi(const struct slice *s) { return s->n == 1 && s->p[0] == '#'; }

static bool eq(const struct slice *a, const struct slice *b)
{
	return a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
}

static bool dollar_blocked(const struct slice *filter_first, const struct slice *topic_first)
{
	return (is_single(filter_first) || is_multi(filter_first))
		&& topic_first->n > 0 && topic_first->p[0] == '$';
}

static bool match_levels(const struct levels *f, const struct levels *t)
{
	size_t i;
	if(dollar_blocked(&f->v[0], &t->v[0])) return false;
	for(i = 0; i < f->n; i++){
		if(is_multi(&f->v[i])) return true; /* '#' also matches the parent level */
		if(i >= t->n) return false;
		if(!is_single(&f->v[i]) && !eq(&f->v[i], &t->v[i])) return false;
	}
	return f->n == t->n;
}

static bool covers_levels(const struct levels *outer, const struct levels *inner)
{
	size_t i;
	if(!is_single(&inner->v[0]) && !is_multi(&inner->v[0])
			&& dollar_blocked(&outer->v[0], &inner->v[0])){
		return false;
	}
	for(i = 0; i < outer->n; i++){
		const struct slice *level = &outer->v[i];
		const struct slice *il;
		if(is_multi(level)) return true;
		if(i >= inner->n) return false;
		il = &inner->v[i];
		if(is_multi(il)){
			/* Only '+/#' covers a bare '#' (both match every non-$ topic). */
			return i == 0 && outer->n == 2 && is_single(&outer->v[0]) && is_multi(&outer->v[1]);
		}
		if(is_single(level)) continue;
		if(is_single(il) || !eq(il, level)) return false;
	}
	return outer->n == inner->n;
}

static bool overlap_levels(const struct levels *a, const struct levels *b)
{
	size_t i, n = a->n > b->n ? a->n : b->n;
	if(dollar_blocked(&a->v[0], &b->v[0]) || dollar_blocked(&b->v[0], &a->v[0])) return false;
	for(i = 0; i < n; i++){
		const struct slice *la = i < a->n ? &a->v[i] : NULL;
		const struct slice *lb = i < b->n ? &b->v[i] : NULL;
		if((la && is_multi(la)) || (lb && is_multi(lb))) return true;
		if(!la || !lb) return false;
		if(!eq(la, lb) && !is_single(la) && !is_single(lb)) return false;
	}
	return true;
}

bool ems_valid_topic_name(const char *topic)
{
	size_t len;
	if(topic == NULL || topic[0] == '\0') return false;
	len = strlen(topic);
	return len <= MAX_TOPIC_BYTES && strpbrk(topic, "+#") == NULL;
}

bool ems_valid_filter(const char *filter, bool placeholders)
{
	const char *level, *end;
	size_t len;
	if(filter == NULL || filter[0] == '\0') return false;
	len = strlen(filter);
	if(len > MAX_TOPIC_BYTES) return false;
	for(level = filter; ; level = end + 1){
		size_t n;
		end = strchr(level, '/');
		if(end == NULL) end = filter + len;
		n = (size_t)(end - level);
		if(n == 1 && level[0] == '#'){
			if(*end != '\0') return false; /* '#' must be the last level */
		}else if(n == 1 && level[0] == '+'){
			/* whole-level wildcard */
		}else if(memchr(level, '#', n) || memchr(level, '+', n)){
			return false;
		}else if(placeholders && memchr(level, '%', n)
				&& !(n == 2 && level[0] == '%' && (level[1] == 'c' || level[1] == 'u'))){
			return false;
		}
		if(*end == '\0') break;
	}
	return true;
}

int ems_access_parse(const char *text, unsigned *access)
{
	if(!strcmp(text, "read")) *access = EMS_ACCESS_READ;
	else if(!strcmp(text, "write")) *access = EMS_ACCESS_WRITE;
	else if(!strcmp(text, "readwrite")) *access = EMS_ACCESS_READWRITE;
	else if(!strcmp(text, "deny")) *access = EMS_ACCESS_DENY;
	else return -1;
	return 0;
}

int ems_rule_init(struct ems_rule *rule, const char *topic, unsigned access)
{
	size_t n = 1, i = 0;
	char *c, *start;
	memset(rule, 0, sizeof(*rule));
	if(access < EMS_ACCESS_READ || access > EMS_ACCESS_DENY) return -1;
	if(!ems_valid_filter(topic, true)) return -1;
	rule->topic = strdup(topic);
	if(rule->topic == NULL) return -1;
	for(c = rule->topic; *c; c++) if(*c == '/') n++;
	rule->levels = calloc(n, sizeof(char *));
	if(rule->levels == NULL){
		free(rule->topic);
		rule->topic = NULL;
		return -1;
	}
	/* levels point into a second copy, cut at the slashes */
	start = strdup(topic);
	if(start == NULL){
		free(rule->levels);
		free(rule->topic);
		memset(rule, 0, sizeof(*rule));
		return -1;
	}
	rule->levels[i++] = start;
	for(c = start; *c; c++){
		if(*c == '/'){
			*c = '\0';
			rule->levels[i++] = c + 1;
		}
	}
	rule->nlevels = n;
	rule->access = access;
	for(i = 0; i < n; i++){
		if(!strcmp(rule->levels[i], "%c") || !strcmp(rule->levels[i], "%u")){
			rule->placeholders = true;
		}
	}
	return 0;
}

void ems_rule_free(struct ems_rule *rule)
{
	if(rule->levels) free(rule->levels[0]);
	free(rule->levels);
	free(rule->topic);
	memset(rule, 0, sizeof(*rule));
}

/* A substituted value must stay one literal level, or a client id such as "x/#" or "+"
 * would turn "ems/%c/cmd" into a wildcard. */
static bool level_value_ok(const char *value)
{
	return value != NULL && value[0] != '\0' && strpbrk(value, "/+#") == NULL;
}

/* The rule's levels with %c/%u filled in; -1 if a needed value is unusable. */
static int resolve(const struct ems_rule *rule, const char *client_id, const char *username,
		struct levels *out)
{
	size_t i;
	if(levels_alloc(out, rule->nlevels)) return -1;
	for(i = 0; i < rule->nlevels; i++){
		const char *level = rule->levels[i];
		if(rule->placeholders && (!strcmp(level, "%c") || !strcmp(level, "%u"))){
			const char *value = level[1] == 'c' ? client_id : username;
			if(!level_value_ok(value)){
				levels_release(out);
				return -1;
			}
			level = value;
		}
		out->v[i].p = level;
		out->v[i].n = strlen(level);
	}
	return 0;
}

static bool speaks_about(const struct ems_rule *rule, bool write)
{
	return rule->access == EMS_ACCESS_DENY
		|| (rule->access & (write ? EMS_ACCESS_WRITE : EMS_ACCESS_READ));
}

bool ems_can(const struct ems_rule *rules, size_t nrules, bool write, const char *topic,
		const char *client_id, const char *username)
{
	struct levels t, r;
	bool decided = false, allowed = false;
	size_t i;
	if(!ems_valid_topic_name(topic)) return false;
	if(split(topic, &t)) return false;
	for(i = 0; i < nrules && !decided; i++){
		if(!speaks_about(&rules[i], write)) continue;
		if(resolve(&rules[i], client_id, username, &r)) continue;
		if(match_levels(&r, &t)){
			decided = true;
			allowed = rules[i].access != EMS_ACCESS_DENY;
		}
		levels_release(&r);
	}
	levels_release(&t);
	return allowed;
}

bool ems_can_subscribe(const struct ems_rule *rules, size_t nrules, const char *filter,
		const char *client_id, const char *username)
{
	struct levels f, r;
	bool decided = false, allowed = false;
	size_t i;
	if(!ems_valid_filter(filter, false)) return false;
	if(split(filter, &f)) return false;
	for(i = 0; i < nrules && !decided; i++){
		if(!speaks_about(&rules[i], false)) continue;
		if(resolve(&rules[i], client_id, username, &r)) continue;
		if(rules[i].access == EMS_ACCESS_DENY){
			if(overlap_levels(&r, &f)){
				decided = true; /* a deny overlapping the filter refuses all of it */
			}
		}else if(covers_levels(&r, &f)){
			decided = true;
			allowed = true;
		}
		levels_release(&r);
	}
	levels_release(&f);
	return allowed;
}
