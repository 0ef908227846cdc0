# mk/install.mk — `make install` and `make uninstall` for chatq.
#
# Included by the top-level Makefile (`include mk/install.mk`), which provides
# BUILD and the rules that build the programs, so `make install` builds what
# is missing first. Every path can be set on the command line:
#
#   make install                               # under /usr/local
#   sudo make install PREFIX=/usr              # as a distribution would
#   make install DESTDIR=/tmp/stage PREFIX=/usr   # staged, for packaging
#
# What goes where (DESTDIR is prefixed to each, never written into a file):
#   $(BINDIR)/chatqd, chatq-worker, chatq   the programs (chatqd starts
#                                            chatq-worker from its own directory)
#   $(UNITDIR)/chatqd.service               the systemd unit, with ExecStart=,
#                                            ExecPaths= and the /etc/chatq paths
#                                            rewritten for BINDIR and SYSCONFDIR
#   $(MANDIR)/man1/chatq.1, man5/chatq.json.5, man8/chatqd.8
#                                            (paths in them rewritten the same way)
#   $(SYSCONFDIR)/chatq/chatq.json          the default configuration, only when
#                                            there is none: an operator's file is
#                                            never overwritten
# The API key file ($(SYSCONFDIR)/chatq/openai-api-key) is the operator's to
# create; install never writes it and uninstall never removes it.
#
# `make uninstall` removes what install put there, except the configuration
# when it differs from the shipped one (it is then the operator's).
#
# Nothing here runs systemctl: after installing on a live system, run
# `systemctl daemon-reload` (and `systemctl enable --now chatqd`).

# Keep whatever default goal the including Makefile has (`all`), even when
# this file is included before its first rule.
chatq_install_saved_goal := $(.DEFAULT_GOAL)

BUILD      ?= build
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
MANDIR     ?= $(PREFIX)/share/man
# systemd also looks for units in /usr/local/lib/systemd/system, so the unit
# follows PREFIX; set UNITDIR=/lib/systemd/system to use the distribution's.
UNITDIR    ?= $(PREFIX)/lib/systemd/system
INSTALL    ?= install

CHATQ_INSTALL_PROGS := $(BUILD)/chatqd $(BUILD)/chatq-worker $(BUILD)/chatq
CHATQ_MAN1 := man/chatq.1
CHATQ_MAN5 := man/chatq.json.5
CHATQ_MAN8 := man/chatqd.8
CHATQ_CONF := $(DESTDIR)$(SYSCONFDIR)/chatq/chatq.json

# The unit and the man pages are written for the default paths; these
# rewrite them for the ones being installed to (a no-op for the defaults).
CHATQ_SED_PATHS = -e 's|/usr/local/bin|$(BINDIR)|g' -e 's|/etc/chatq|$(SYSCONFDIR)/chatq|g'
# $(call chatq_install_man,SOURCE,SECTION-DIR)
chatq_install_man = sed -e 's|/usr/local/lib/systemd/system|$(UNITDIR)|g' $(CHATQ_SED_PATHS) \
	  $(1) > $(DESTDIR)$(MANDIR)/$(2)/$(notdir $(1)) && chmod 0644 $(DESTDIR)$(MANDIR)/$(2)/$(notdir $(1))

.PHONY: install uninstall

install: $(CHATQ_INSTALL_PROGS) systemd/chatqd.service etc/chatq.json \
         $(CHATQ_MAN1) $(CHATQ_MAN5) $(CHATQ_MAN8)
	$(INSTALL) -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(SYSCONFDIR)/chatq
	$(INSTALL) -m 0755 $(CHATQ_INSTALL_PROGS) $(DESTDIR)$(BINDIR)/
	sed $(CHATQ_SED_PATHS) systemd/chatqd.service > $(DESTDIR)$(UNITDIR)/chatqd.service.tmp
	chmod 0644 $(DESTDIR)$(UNITDIR)/chatqd.service.tmp
	mv -f $(DESTDIR)$(UNITDIR)/chatqd.service.tmp $(DESTDIR)$(UNITDIR)/chatqd.service
	$(call chatq_install_man,$(CHATQ_MAN1),man1)
	$(call chatq_install_man,$(CHATQ_MAN5),man5)
	$(call chatq_install_man,$(CHATQ_MAN8),man8)
	@if [ -e $(CHATQ_CONF) ]; then \
	  echo "keeping the existing $(CHATQ_CONF)"; \
	else \
	  echo "installing $(CHATQ_CONF)"; \
	  sed $(CHATQ_SED_PATHS) etc/chatq.json > $(CHATQ_CONF) && chmod 0644 $(CHATQ_CONF); \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/chatqd $(DESTDIR)$(BINDIR)/chatq-worker $(DESTDIR)$(BINDIR)/chatq
	rm -f $(DESTDIR)$(UNITDIR)/chatqd.service
	rm -f $(DESTDIR)$(MANDIR)/man1/chatq.1 $(DESTDIR)$(MANDIR)/man5/chatq.json.5 \
	  $(DESTDIR)$(MANDIR)/man8/chatqd.8
	@if [ -e $(CHATQ_CONF) ] && ! sed $(CHATQ_SED_PATHS) etc/chatq.json | cmp -s - $(CHATQ_CONF); then \
	  echo "keeping $(CHATQ_CONF): it differs from the shipped one"; \
	else \
	  rm -f $(CHATQ_CONF); \
	  rmdir $(DESTDIR)$(SYSCONFDIR)/chatq 2>/dev/null || true; \
	fi

.DEFAULT_GOAL := $(chatq_install_saved_goal)
