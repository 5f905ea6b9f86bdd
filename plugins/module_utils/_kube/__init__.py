# Copyright (c) kubepki.certs contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# PRIVATE to kubepki.certs; may change in any release.
# Kubernetes access: client (auth options, the client with retries, bounded fan-out, who is asking), transport (the light urllib3 path)
