# rdext: build with cargo, install the static binary and the dracut module.
#
#   make                     build the static musl binaries: rdext (full) and
#                            rdext-merge-only (no downloads, no TLS)
#   make install DESTDIR=D   install D/usr/bin/rdext, D/usr/bin/rdext-merge-only,
#                            D/usr/lib/dracut/modules.d/90rdext/, the units
#                            (rdext-bless, rdext-refresh), docs/examples and
#                            the man pages under D/usr/share/man/
#   make man                 the man pages from docs/*.md into target/man/ (lowdown)
#   make install-mkosi DESTDIR=D
#                            install D/usr/share/rdext/mkosi/rdext-initrd/, the
#                            configuration that adds rdext to mkosi's default initrd
#   make size-check          print both stripped sizes, fail over the budget
#   make check               what CI runs: fmt, clippy, cargo test, static-binary
#                            and size checks, QEMU boot tests (root; see docs/initrd.md)
#   make test-qemu           QEMU boot tests only
#   make demo                one demo boot showing the effects on the console
#   make demo-mkosi          the same for an image and initrd built by mkosi
#   make fuzz FUZZ_SECONDS=N every fuzz target for N seconds (default 15;
#                            make check runs that too). See fuzz/run.sh.
#
# BIN=path / MERGE_ONLY_BIN=path install prebuilt binaries instead of
# building them with cargo.

TARGET     ?= x86_64-unknown-linux-musl
CARGO      ?= cargo
PREFIX     ?= /usr
BINDIR     ?= $(PREFIX)/bin
DRACUTDIR  ?= $(PREFIX)/lib/dracut/modules.d
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DOCDIR     ?= $(PREFIX)/share/doc/rdext
MANDIR     ?= $(PREFIX)/share/man
MKOSIDIR   ?= $(PREFIX)/share/rdext/mkosi
DESTDIR    ?=
DEFAULT_BIN := target/$(TARGET)/release/rdext
DEFAULT_MERGE_ONLY_BIN := target/$(TARGET)/release/rdext-merge-only
BIN        ?= $(DEFAULT_BIN)
MERGE_ONLY_BIN ?= $(DEFAULT_MERGE_ONLY_BIN)
# Size budgets of the stripped binaries, in bytes: 2.5 MiB and 1 MiB.
MAX_SIZE            := 2621440
MAX_SIZE_MERGE_ONLY := 1048576
# The shipped binaries rebuild std for size (docs/design.md, "Binary size"):
# a panic aborts at once without a message (no formatting, no backtrace), no
# unwind tables. This needs rust-src and unlocks the stable toolchain with
# RUSTC_BOOTSTRAP=1 for these two builds only; plain `cargo build` and
# `cargo test` stay stable Rust. The rustflags add to .cargo/config.toml's.
RELEASE_CARGO := RUSTC_BOOTSTRAP=1 $(CARGO) build --release --target $(TARGET) \
	-Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size \
	--config 'target.$(TARGET).rustflags = ["-Zunstable-options", "-Cpanic=immediate-abort", "-Cforce-unwind-tables=no"]'

MODULE_NAME  := 90rdext
MODULE_FILES := module-setup.sh rdext-merge.service rdext-generator rdext-pre-pivot.sh

# Man pages, generated from the reference pages in docs/ (the only source).
MAN_PAGES := target/man/rdext.8 target/man/rdext-initrd.7 target/man/rdext-retraction.5

FUZZ_SECONDS ?= 15

.PHONY: all build man man-check install install-mkosi uninstall size-check check test-qemu demo demo-mkosi fuzz clean FORCE

all: build

# cargo decides whether anything needs rebuilding. Both builds share the target
# directory (and so every dependency they have in common); the merge-only one
# is copied aside, and the full one is built last so release/rdext is it.
build: FORCE
	$(RELEASE_CARGO) --no-default-features
	cp -f $(DEFAULT_BIN) $(DEFAULT_MERGE_ONLY_BIN)
	$(RELEASE_CARGO)

$(DEFAULT_BIN) $(DEFAULT_MERGE_ONLY_BIN): build

man: $(MAN_PAGES)

target/man/rdext.8: docs/rdext.md
target/man/rdext-initrd.7: docs/initrd.md
target/man/rdext-retraction.5: docs/retraction.md
$(MAN_PAGES): docs/md2man
	@mkdir -p $(@D)
	docs/md2man $(filter %.md,$^) $(@F) > $@.tmp
	mv $@.tmp $@

# Each page must render at 80 columns without a single warning from man/groff.
man-check: $(MAN_PAGES)
	@for page in $(MAN_PAGES); do \
		out=$$(MANWIDTH=80 man --warnings -E UTF-8 -l $$page 2>&1 >/dev/null); \
		[ -z "$$out" ] || { echo "$$page: $$out"; exit 1; }; \
		echo "$$page: renders without warnings"; \
	done

install: $(BIN) $(MERGE_ONLY_BIN) $(MAN_PAGES)
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/rdext
	install -m 0755 $(MERGE_ONLY_BIN) $(DESTDIR)$(BINDIR)/rdext-merge-only
	install -d -m 0755 $(DESTDIR)$(DRACUTDIR)/$(MODULE_NAME)
	install -m 0755 dracut-module/module-setup.sh dracut-module/rdext-generator \
		dracut-module/rdext-pre-pivot.sh $(DESTDIR)$(DRACUTDIR)/$(MODULE_NAME)/
	install -m 0644 dracut-module/rdext-merge.service $(DESTDIR)$(DRACUTDIR)/$(MODULE_NAME)/
	install -D -m 0644 systemd/rdext-bless.service $(DESTDIR)$(UNITDIR)/rdext-bless.service
	install -D -m 0644 systemd/rdext-refresh.service $(DESTDIR)$(UNITDIR)/rdext-refresh.service
	install -D -m 0644 systemd/examples/systemd-sysupdate.service.d/50-rdext-refresh.conf \
		$(DESTDIR)$(DOCDIR)/examples/systemd-sysupdate.service.d/50-rdext-refresh.conf
	install -D -m 0644 docs/rdext.md $(DESTDIR)$(DOCDIR)/rdext.md
	for page in $(MAN_PAGES); do \
		install -D -m 0644 $$page $(DESTDIR)$(MANDIR)/man$${page##*.}/$${page##*/}; \
	done

# An Include=-able mkosi configuration for the default initrd: its mkosi.extra/
# holds the binary, the dracut module's unit and generator, and the unit's
# enablement (see mkosi/README.md).
MKOSI_INITRD := $(DESTDIR)$(MKOSIDIR)/rdext-initrd
install-mkosi: $(BIN)
	install -D -m 0644 mkosi/rdext-initrd/mkosi.conf $(MKOSI_INITRD)/mkosi.conf
	install -D -m 0755 $(BIN) $(MKOSI_INITRD)/mkosi.extra/usr/bin/rdext
	install -D -m 0644 dracut-module/rdext-merge.service \
		$(MKOSI_INITRD)/mkosi.extra/usr/lib/systemd/system/rdext-merge.service
	install -D -m 0755 dracut-module/rdext-generator \
		$(MKOSI_INITRD)/mkosi.extra/usr/lib/systemd/system-generators/rdext-generator
	install -d -m 0755 $(MKOSI_INITRD)/mkosi.extra/usr/lib/systemd/system/initrd.target.wants
	ln -sfn ../rdext-merge.service \
		$(MKOSI_INITRD)/mkosi.extra/usr/lib/systemd/system/initrd.target.wants/rdext-merge.service

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/rdext $(DESTDIR)$(BINDIR)/rdext-merge-only
	rm -rf $(DESTDIR)$(DRACUTDIR)/$(MODULE_NAME)
	rm -f $(DESTDIR)$(UNITDIR)/rdext-bless.service $(DESTDIR)$(UNITDIR)/rdext-refresh.service
	rm -rf $(DESTDIR)$(DOCDIR)
	for page in $(MAN_PAGES); do rm -f $(DESTDIR)$(MANDIR)/man$${page##*.}/$${page##*/}; done
	rm -rf $(DESTDIR)$(MKOSIDIR)

# Sizes as shipped: stripped (the release profile strips already; strip
# again so a profile change cannot hide bytes).
size-check: build
	@set -e; tmp=$$(mktemp -d); \
	strip -o $$tmp/full $(DEFAULT_BIN); strip -o $$tmp/merge-only $(DEFAULT_MERGE_ONLY_BIN); \
	full=$$(stat -c %s $$tmp/full); mo=$$(stat -c %s $$tmp/merge-only); rm -rf $$tmp; \
	echo "size: rdext $$full bytes (budget $(MAX_SIZE)), rdext-merge-only $$mo bytes (budget $(MAX_SIZE_MERGE_ONLY))"; \
	if [ $$full -gt $(MAX_SIZE) ]; then echo "size: rdext is over its budget" >&2; exit 1; fi; \
	if [ $$mo -gt $(MAX_SIZE_MERGE_ONLY) ]; then echo "size: rdext-merge-only is over its budget" >&2; exit 1; fi

check: build
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --no-default-features -- -D warnings
	$(CARGO) test
	$(CARGO) test --no-default-features --test merge merge_only
	file -L $(DEFAULT_BIN) | grep -Eq 'static(-pie)? linked'
	file -L $(DEFAULT_MERGE_ONLY_BIN) | grep -Eq 'static(-pie)? linked'
	$(MAKE) --no-print-directory size-check
	$(MAKE) man-check
	fuzz/run.sh 15
	tests-qemu/verity/run.sh
	tests-qemu/run
	tests-qemu/mkosi/run

test-qemu:
	tests-qemu/run
	tests-qemu/mkosi/run

demo:
	tests-qemu/demo

demo-mkosi:
	tests-qemu/mkosi/run --demo

fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

clean:
	$(CARGO) clean

FORCE:
