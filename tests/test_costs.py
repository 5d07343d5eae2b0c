"""Session costs: tariffs by time of day and date, split by the session's readings."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from chargers import costs
from chargers.costs import TariffRule
from chargers.models import Reading, Session, Station, Tariff

VIENNA = ZoneInfo("Europe/Vienna")
DAY = TariffRule(date(2024, 1, 1), Decimal("0.30"), "EUR")
NIGHT = TariffRule(date(2024, 1, 1), Decimal("0.10"), "EUR", time(22), time(6))


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=VIENNA)


def test_it_prices_a_session_inside_one_tariff() -> None:
    cost = costs.session_cost(
        [DAY, NIGHT], local(2024, 3, 5, 9), local(2024, 3, 5, 11), 10, [], VIENNA
    )
    assert (cost.amount, cost.currency) == (Decimal("3.00"), "EUR")


def test_it_splits_a_session_at_a_tariff_boundary_by_its_readings() -> None:
    # 20:00-24:00, but the car took 8 of its 10 kWh before 22:00.
    readings = [(local(2024, 3, 5, 22), 8.0)]
    cost = costs.session_cost(
        [DAY, NIGHT], local(2024, 3, 5, 20), local(2024, 3, 6, 0), 10, readings, VIENNA
    )
    assert cost.amount == Decimal("2.60")  # 8 * 0.30 + 2 * 0.10


def test_it_counts_real_hours_on_the_day_clocks_go_back() -> None:
    # 27 Oct 2024 in Vienna has 25 hours: 20:00 to 08:00 is 13 real hours, of which
    # the night tariff (22:00-06:00 local) covers 9, not 8.
    start, end = local(2024, 10, 26, 20), local(2024, 10, 27, 8)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=13)
    cost = costs.session_cost([DAY, NIGHT], start, end, 13, [], VIENNA)
    night = sum(part.energy_kwh for part in cost.parts if part.rule == NIGHT)
    assert night == pytest.approx(9.0)
    assert cost.amount == Decimal("2.10")  # 9 * 0.10 + 4 * 0.30


def test_it_counts_real_hours_on_the_day_clocks_go_forward() -> None:
    start, end = local(2024, 3, 30, 20), local(2024, 3, 31, 8)  # 11 real hours
    cost = costs.session_cost([DAY, NIGHT], start, end, 11, [], VIENNA)
    night = sum(part.energy_kwh for part in cost.parts if part.rule == NIGHT)
    assert night == pytest.approx(7.0)


def test_a_new_price_list_replaces_the_old_from_its_date() -> None:
    newer = TariffRule(date(2024, 6, 1), Decimal("0.40"), "EUR")
    cost = costs.session_cost(
        [DAY, NIGHT, newer], local(2024, 5, 31, 23), local(2024, 6, 1, 1), 2, [], VIENNA
    )
    assert cost.amount == Decimal("0.50")  # 1 * 0.10 at night in May, 1 * 0.40 in June


def test_it_ignores_a_stale_reading_from_the_previous_session() -> None:
    readings = [(local(2024, 3, 5, 9, 1), 25.0), (local(2024, 3, 5, 10), 5.0)]
    curve = costs.EnergyCurve(local(2024, 3, 5, 9), local(2024, 3, 5, 11), 10, readings)
    assert [kwh for _, kwh in curve.points] == [0.0, 5.0, 5.0, 10.0]


def test_it_says_when_no_tariff_was_in_force() -> None:
    with pytest.raises(costs.NoTariff, match="2023-12-31"):
        costs.session_cost([DAY], local(2023, 12, 31, 9), local(2023, 12, 31, 10), 1, [], VIENNA)


def test_it_refuses_to_add_up_two_currencies() -> None:
    francs = TariffRule(date(2024, 6, 1), Decimal("0.40"), "CHF")
    with pytest.raises(costs.MixedCurrencies):
        costs.session_cost(
            [DAY, francs], local(2024, 5, 31, 23), local(2024, 6, 1, 1), 2, [], VIENNA
        )


# Sessions in the database


def closed_session(station: Station, start: datetime, hours: float, kwh: float) -> Session:
    return Session.objects.create(
        station=station,
        keba_session_id=Session.objects.count() + 1,
        started_at=start,
        ended_at=start + timedelta(hours=hours),
        energy_kwh=kwh,
    )


@pytest.mark.django_db
@override_settings(TIME_ZONE="Europe/Vienna")
def test_a_session_is_priced_with_its_readings_when_it_closes() -> None:
    Tariff.objects.create(price_per_kwh=Decimal("0.30"), valid_from=date(2024, 1, 1))
    Tariff.objects.create(
        price_per_kwh=Decimal("0.10"),
        valid_from=date(2024, 1, 1),
        starts_at=time(22),
        ends_at=time(6),
    )
    station = Station.objects.create(name="Garage", address="127.0.0.2")
    Reading.objects.create(station=station, at=local(2024, 3, 5, 22), session_energy_kwh=8.0)
    session = closed_session(station, local(2024, 3, 5, 20), 4, 10)
    session.refresh_from_db()
    assert (session.cost, session.currency) == (Decimal("2.60"), "EUR")


@pytest.mark.django_db
@override_settings(TIME_ZONE="Europe/Vienna")
def test_a_closed_session_keeps_its_cost_until_the_admin_recalculates() -> None:
    tariff = Tariff.objects.create(price_per_kwh=Decimal("0.30"), valid_from=date(2024, 1, 1))
    station = Station.objects.create(name="Garage", address="127.0.0.2")
    session = closed_session(station, local(2024, 3, 5, 9), 2, 10)
    tariff.price_per_kwh = Decimal("0.50")
    tariff.save()
    session.energy_kwh = 10.0
    session.save()  # the gateway saving it again changes nothing
    session.refresh_from_db()
    assert session.cost == Decimal("3.00")

    admin = Client()
    admin.force_login(User.objects.create_superuser("admin", "a@example.com", "secret"))
    response = admin.post(
        "/admin/chargers/session/",
        {"action": "recalculate_costs", "_selected_action": [session.pk]},
        follow=True,
    )
    session.refresh_from_db()
    assert session.cost == Decimal("5.00")
    assert "1 session(s) priced again." in response.content.decode()
