#
# SPDX-License-Identifier: Apache-2.0
#
# fleetOS device checks for testimage (TEST_SUITES += "fleet"). The checks themselves are
# the shell functions of ../files/fleet-checks.sh, which scripts/test-image runs too: this
# module only turns each "#@oeqa NAME [ARGS] | DESCRIPTION" line of that file into a test
# method test_fleet_NAME that runs `fleet_check_NAME ARGS` on the target.

import os

from oeqa.runtime.case import OERuntimeTestCase

CHECKS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'files', 'fleet-checks.sh')
CHECKS_ON_TARGET = '/tmp/fleet-checks.sh'


def read_checks(path=CHECKS_FILE):
    """(name, args, description) of each "#@oeqa" line, in file order."""
    checks = []
    with open(path) as f:
        for line in f:
            if not line.startswith('#@oeqa '):
                continue
            spec, _, description = line[len('#@oeqa '):].partition('|')
            words = spec.split()
            if not words or not description.strip():
                raise ValueError('%s: malformed check line: %s' % (path, line.rstrip()))
            checks.append((words[0], words[1:], description.strip()))
    return checks


class FleetTest(OERuntimeTestCase):
    """One test per device check of fleet-checks.sh (generated below)."""

    @classmethod
    def setUpClass(cls):
        cls.tc.target.copyTo(CHECKS_FILE, CHECKS_ON_TARGET)

    @classmethod
    def tearDownClass(cls):
        cls.tc.target.run('rm -f %s' % CHECKS_ON_TARGET)

    def run_check(self, name, args):
        cmd = '. %s && fleet_check_%s %s' % (CHECKS_ON_TARGET, name, ' '.join(args))
        status, output = self.target.run(cmd)
        self.assertEqual(status, 0, msg='fleet_check_%s: %s' % (name, output))


def _make_test(name, args, description):
    def test(self):
        self.run_check(name, args)
    test.__name__ = 'test_fleet_%s' % name
    test.__doc__ = description
    return test


for _name, _args, _description in read_checks():
    setattr(FleetTest, 'test_fleet_%s' % _name, _make_test(_name, _args, _description))
