"""Issue 7's proof: under each fault, the records match what the stations really did.

Each test plays one scenario of tests/fault_scenarios.py against the real gateway
(a child process over real UDP and a file database) and lists what was wrong.
"""

from tests import fault_scenarios as scenarios


def assert_true_records(result: scenarios.Result) -> None:
    assert result.ok, result.report()


async def test_it_ignores_forged_datagrams_with_a_known_serial() -> None:
    assert_true_records(await scenarios.forged_datagrams())


async def test_it_keeps_both_stations_when_they_swap_addresses() -> None:
    assert_true_records(await scenarios.swapped_addresses())


async def test_it_keeps_polling_a_station_that_reports_an_impossible_timestamp() -> None:
    assert_true_records(await scenarios.impossible_timestamp())


async def test_it_records_both_sessions_of_a_quick_replug() -> None:
    assert_true_records(await scenarios.quick_replug())


async def test_it_marks_p20_sessions_across_downtime_incomplete_without_inventing() -> None:
    assert_true_records(await scenarios.p20_downtime())


async def test_it_closes_a_session_at_the_reboot_with_its_last_energy() -> None:
    assert_true_records(await scenarios.reboot_mid_session())


async def test_a_restart_in_the_middle_of_a_poll_invents_no_session() -> None:
    assert_true_records(await scenarios.restart_within_a_poll())


async def test_it_resolves_a_command_in_flight_at_kill_9() -> None:
    assert_true_records(await scenarios.command_in_flight_at_kill())


async def test_it_does_not_resend_a_non_idempotent_command_whose_reply_was_lost() -> None:
    assert_true_records(await scenarios.lost_reply_not_idempotent())


async def test_it_says_acknowledged_where_report_2_cannot_show_a_command() -> None:
    assert_true_records(await scenarios.unverifiable_commands())


async def test_two_gateways_never_send_one_command_twice() -> None:
    assert_true_records(await scenarios.two_gateways())


async def test_exactly_one_task_cluster_runs_after_serve_is_killed() -> None:
    assert_true_records(await scenarios.cluster_after_kill())


async def test_concurrent_admin_adds_succeed_while_the_gateway_writes() -> None:
    assert_true_records(await scenarios.concurrent_admin_adds())


async def test_a_kill_9_mid_batch_neither_doubles_nor_loses_sessions() -> None:
    assert_true_records(await scenarios.kill_mid_batch())


async def test_records_converge_under_30_percent_loss_with_reboots() -> None:
    assert_true_records(await scenarios.loss_with_reboots())
