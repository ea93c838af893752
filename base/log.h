/* base/log.h — libraries report through a sink the CLI installs (jq's
 * callback); only cli/ decides what reaches the terminal. */
#ifndef ANNEAL_LOG_H
#define ANNEAL_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

typedef void (*log_sink_fn)(enum log_level level, const char *msg, void *ctx);

/* Installs the sink (NULL: discard). Not thread-safe: call at start-up. */
void log_set_sink(log_sink_fn fn, void *ctx);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
