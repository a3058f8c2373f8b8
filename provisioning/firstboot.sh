#!/usr/bin/env bash
# first-boot: bring a freshly flashed Raspberry Pi OS (Bookworm, Lite, 64-bit) box to the
# enrolment-ready state, once. Provincial IT copies three files to the boot partition
# (/boot/firmware) before the first boot:
#   appliance-device-id      one line: the device id from the registry, e.g. 19999-01
#   appliance-admin.pub      the provincial Ansible SSH public key(s)
#   appliance-firstboot.sh   this script
# and runs it from cmdline.txt/firstrun (Raspberry Pi Imager) or by hand as root:
#   bash /boot/firmware/appliance-firstboot.sh
# It is idempotent: a second run changes nothing. After it: `ansible-playbook enrol.yml -l <id>`,
# then `site.yml -l <id>`.
set -euo pipefail

BOOT=${APPLIANCE_BOOT_DIR:-/boot/firmware}
[ -d "$BOOT" ] || BOOT=/boot
ADMIN=${APPLIANCE_ADMIN_USER:-provision}
DONE=/var/lib/appliance-firstboot/done

log() { printf 'first-boot: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root"
[ -r "$BOOT/appliance-device-id" ] || die "$BOOT/appliance-device-id is missing"
DEVICE_ID=$(tr -d ' \r\n' < "$BOOT/appliance-device-id")
[[ "$DEVICE_ID" =~ ^[0-9]{5}-[0-9]{2}$ ]] || die "device id '$DEVICE_ID' must look like 19999-01"
[ -s "$BOOT/appliance-admin.pub" ] || die "$BOOT/appliance-admin.pub is missing"

# 0. what Ansible, enrolment and the admin account need
missing=()
for p in python3 python3-venv python3-apt openssl ca-certificates sudo; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# 1. name the box after its device id (what Ansible, the broker and the dashboard call it)
HOSTNAME_WANTED="box-$DEVICE_ID"
if [ "$(cat /etc/hostname 2>/dev/null)" != "$HOSTNAME_WANTED" ]; then
    log "hostname $HOSTNAME_WANTED"
    echo "$HOSTNAME_WANTED" > /etc/hostname
    hostname "$HOSTNAME_WANTED" 2>/dev/null || true
    if grep -qs '^127\.0\.1\.1' /etc/hosts; then
        sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$HOSTNAME_WANTED/" /etc/hosts
    else
        printf '127.0.1.1\t%s\n' "$HOSTNAME_WANTED" >> /etc/hosts
    fi
fi

# 2. the provincial admin account: SSH keys only, sudo without password (Ansible's become)
if ! id "$ADMIN" >/dev/null 2>&1; then
    log "admin user $ADMIN"
    useradd --create-home --shell /bin/bash --groups sudo "$ADMIN"
    passwd --lock "$ADMIN" >/dev/null
fi
install -d -m 0700 -o "$ADMIN" -g "$ADMIN" "/home/$ADMIN/.ssh"
install -m 0600 -o "$ADMIN" -g "$ADMIN" "$BOOT/appliance-admin.pub" "/home/$ADMIN/.ssh/authorized_keys"
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$ADMIN" > /etc/sudoers.d/90-appliance-provision
chmod 0440 /etc/sudoers.d/90-appliance-provision

# 3. SSH: keys only, no root login
install -d -m 0755 /etc/ssh/sshd_config.d
cat > /etc/ssh/sshd_config.d/50-appliance.conf <<'CONF'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
CONF
systemctl enable ssh.service >/dev/null 2>&1 || true

# 4. time zone and hardware watchdog
timedatectl set-timezone Asia/Ho_Chi_Minh 2>/dev/null || ln -sf /usr/share/zoneinfo/Asia/Ho_Chi_Minh /etc/localtime
CONFIG_TXT="$BOOT/config.txt"
if [ -f "$CONFIG_TXT" ] && ! grep -q '^dtparam=watchdog=on' "$CONFIG_TXT"; then
    log "enable the hardware watchdog"
    printf '\n# appliance: hardware watchdog (systemd RuntimeWatchdogSec)\ndtparam=watchdog=on\n' >> "$CONFIG_TXT"
fi
# 5. the service user and its device groups (the appliance role keeps them in line later)
for g in scanner plugdev video appliance; do
    getent group "$g" >/dev/null || groupadd --system "$g"
done
if ! id appliance >/dev/null 2>&1; then
    useradd --system --gid appliance --groups scanner,plugdev,video --home-dir /var/lib/appliance \
        --no-create-home --shell /usr/sbin/nologin appliance
fi
install -d -m 0750 -o root -g appliance /etc/appliance /etc/appliance/tls
echo "$DEVICE_ID" > /etc/appliance/device-id

# 6. enrolment-ready: Ansible's enrol.yml makes the key + CSR on the box from here
install -d -m 0755 "$(dirname "$DONE")"
if [ ! -f "$DONE" ]; then
    date -u +%Y-%m-%dT%H:%M:%SZ > "$DONE"
    log "box $DEVICE_ID is ready for enrolment (ansible-playbook enrol.yml -l $DEVICE_ID)"
fi
