/* version.h — chatq's version, printed by `--version` of chatqd,
 * chatq-worker and chatq. One definition, so the three never disagree. */
#ifndef CHATQ_VERSION_H
#define CHATQ_VERSION_H

#define CHATQ_VERSION "0.1.0"

#endif
