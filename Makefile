# rdext: build with cargo, install the static binary and the dracut module.
#
#   make                     build the static musl binary
#   make install DESTDIR=D   install D/usr/bin/rdext, D/usr/lib/dracut/modules.d/90rdext/,
#                            the units (rdext-bless, rdext-refresh) and docs/examples
#   make check               what CI runs: fmt, clippy, cargo test, static-binary
#                            check, QEMU boot tests (root; see docs/initrd.md)
#   make test-qemu           QEMU boot tests only
#   make demo                one demo boot showing the effects on the console
#
# BIN=path installs a prebuilt binary instead of building one with cargo.

TARGET     ?= x86_64-unknown-linux-musl
CARGO      ?= cargo
PREFIX     ?= /usr
BINDIR     ?= $(PREFIX)/bin
DRACUTDIR  ?= $(PREFIX)/lib/dracut/modules.d
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DOCDIR     ?= $(PREFIX)/share/doc/rdext
DESTDIR    ?=
DEFAULT_BIN := target/$(TARGET)/release/rdext
BIN        ?= $(DEFAULT_BIN)

MODULE_NAME  := 90rdext
MODULE_FILES := module-setup.sh rdext-merge.service rdext-generator rdext-pre-pivot.sh

.PHONY: all build install uninstall check test-qemu demo clean FORCE

all: build

build: $(DEFAULT_BIN)

# cargo decides whether anything needs rebuilding.
$(DEFAULT_BIN): FORCE
	$(CARGO) build --release --target $(TARGET)

install: $(BIN)
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/rdext
	install -d -m 0755 $(DESTDIR)$(DRACUTDIR)/$(MODULE_NAME)
	install -m 0755 dracut-module/module-setup.sh dracut-module/rdext-generator \
		dracut-module/rdext-pre-pivot.sh $(DESTDIR)$(DRACUTDIR)/$(MODULE_NAME)/
	install -m 0644 dracut-module/rdext-merge.service $(DESTDIR)$(DRACUTDIR)/$(MODULE_NAME)/
	install -D -m 0644 systemd/rdext-bless.service $(DESTDIR)$(UNITDIR)/rdext-bless.service
	install -D -m 0644 systemd/rdext-refresh.service $(DESTDIR)$(UNITDIR)/rdext-refresh.service
	install -D -m 0644 systemd/examples/systemd-sysupdate.service.d/50-rdext-refresh.conf \
		$(DESTDIR)$(DOCDIR)/examples/systemd-sysupdate.service.d/50-rdext-refresh.conf
	install -D -m 0644 docs/rdext.md $(DESTDIR)$(DOCDIR)/rdext.md

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/rdext
	rm -rf $(DESTDIR)$(DRACUTDIR)/$(MODULE_NAME)
	rm -f $(DESTDIR)$(UNITDIR)/rdext-bless.service $(DESTDIR)$(UNITDIR)/rdext-refresh.service
	rm -rf $(DESTDIR)$(DOCDIR)

check: build
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test
	file -L $(DEFAULT_BIN) | grep -Eq 'static(-pie)? linked'
	tests-qemu/verity/run.sh
	tests-qemu/run

test-qemu:
	tests-qemu/run

demo:
	tests-qemu/demo

clean:
	$(CARGO) clean

FORCE:
