"""Runs the menu of ``config/ivr.toml`` for one caller over an AGI session.

The runner decides; it does not know about AMI, the vault or the database. It
returns an :class:`IvrOutcome` that the service writes to the channel. Rules
that protect the caller, whatever the menu file says:

* she always reaches a person: a menu that ends without a route, loops, or
  exceeds :data:`MAX_PROMPTS` takes the file's default route;
* silence is not a prank: the menu's ``on_silence`` applies (the shipped file
  queues her on the ``silent`` route with the ``silent`` flag);
* the dialplan's watchdog (TIMEOUT(absolute)) is re-armed before every prompt,
  so a backend that dies mid-menu costs her at most ``watchdog_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .menu import Action, IvrMenu, Menu
from .session import AGISession

#: Prompts one caller may hear before the IVR stops asking and puts her through.
MAX_PROMPTS = 25


@dataclass(slots=True)
class IvrStep:
    """One prompt and what she did: a key, an entry, silence or an invalid key."""

    menu: str
    result: str  # "key" | "entry" | "silence" | "invalid"
    key: str | None = None  # the option key; entries (references) are not kept here


@dataclass(slots=True)
class IvrOutcome:
    route: str
    queue: str
    priority: int
    category: str
    risk: str
    language: str
    flags: tuple[str, ...]
    callback_ok: bool
    queue_timeout: int | None = None
    #: A complaint reference she keyed (already Luhn-checked), if any.
    reference: str | None = None
    path: list[IvrStep] = field(default_factory=list)
    #: True when a protective rule, not her choices, picked the route.
    defaulted: bool = False

    def channel_variables(self) -> dict[str, str]:
        """What the dialplan reads after ASYNCAGI BREAK (see extensions_1090.conf)."""
        variables = {
            "WPL_QUEUE": self.queue,
            "QUEUE_PRIO": str(self.priority),
            "WPL_CATEGORY": self.category,
            "WPL_LANGUAGE": self.language,
            "WPL_RISK": self.risk,
            "WPL_FLAGS": ",".join(self.flags),
            "WPL_CALLBACK_OK": "1" if self.callback_ok else "0",
        }
        if self.queue_timeout is not None:
            variables["WPL_QUEUE_TIMEOUT"] = str(self.queue_timeout)
        return variables

    def path_text(self) -> str:
        """The IVR path for the call record: ``danger:silence>language:1>main:4``."""
        parts = []
        for step in self.path:
            mark = step.key if step.result == "key" else step.result
            parts.append(f"{step.menu}:{mark}")
        return ">".join(parts)


class _Choices:
    """What she has chosen so far, as actions apply."""

    def __init__(self, menu: IvrMenu) -> None:
        self.language: str | None = None
        self.callback_ok = False
        self.flags: list[str] = []
        self.route: str | None = None
        self.reference: str | None = None
        self._ivr = menu

    def apply(self, action: Action) -> None:
        if action.language is not None:
            self.language = action.language
        if action.callback is not None:
            self.callback_ok = action.callback
        for flag in action.flags:
            if flag not in self.flags:
                self.flags.append(flag)
        if action.route is not None:
            self.route = action.route


class MenuRunner:
    def __init__(self, menu: IvrMenu) -> None:
        self.menu = menu

    async def run(self, session: AGISession) -> IvrOutcome:
        """Run the menu to its end. Raises CallerHungUp when she hangs up."""
        ivr = self.menu
        choices = _Choices(ivr)
        path: list[IvrStep] = []
        name: str | None = ivr.start
        prompts = 0
        defaulted = False
        while name is not None:
            menu = ivr.menus[name]
            action, used = await self._ask(
                session, name, menu, choices, path, MAX_PROMPTS - prompts
            )
            prompts += used
            if action is None:
                # Too many prompts (a loop in the file, or she keeps pressing 9):
                # stop asking and put her through.
                defaulted = True
                break
            choices.apply(action)
            name = action.goto
        return self._outcome(choices, path, defaulted)

    async def run_blocked(self, session: AGISession) -> IvrOutcome | None:
        """For a caller blocked as abusive: only the first (danger) prompt.

        A block must never cut off a woman in danger: if she chooses the
        danger option she is routed as anyone would be (flagged ``blocked``);
        otherwise None, and the service plays the notice and ends the call.
        """
        ivr = self.menu
        choices = _Choices(ivr)
        path: list[IvrStep] = []
        menu = ivr.menus[ivr.start]
        action, _used = await self._ask(session, ivr.start, menu, choices, path, 2)
        if action is None or action.route is None:
            return None
        choices.apply(action)
        choices.flags.append("blocked")
        return self._outcome(choices, path, defaulted=False)

    async def _ask(
        self,
        session: AGISession,
        name: str,
        menu: Menu,
        choices: _Choices,
        path: list[IvrStep],
        budget: int,
    ) -> tuple[Action | None, int]:
        silences = 0
        invalid = 0
        used = 0
        play_invalid = False
        while used < budget:
            used += 1
            await self._arm_watchdog(session)
            if play_invalid:
                await session.stream_file(
                    self.menu.sound(self.menu.invalid_prompt(menu), self._language(choices))
                )
                play_invalid = False
            keyed = await self._prompt(session, menu, choices)
            if not keyed:
                path.append(IvrStep(name, "silence"))
                silences += 1
                if silences > menu.retries:
                    return menu.on_silence, used
                continue
            if menu.kind == "digits":
                if menu.accepts(keyed):
                    path.append(IvrStep(name, "entry"))
                    if menu.validate_ == "reference":
                        choices.reference = keyed
                    return menu.on_valid or Action(), used
            else:
                option = menu.options.get(keyed[0])
                if option is not None:
                    path.append(IvrStep(name, "key", keyed[0]))
                    return option, used
            path.append(IvrStep(name, "invalid"))
            invalid += 1
            if invalid >= self.menu.max_invalid(menu):
                return self.menu.on_max_invalid(menu), used
            if menu.on_invalid is not None:
                return menu.on_invalid, used
            play_invalid = True
        return None, used

    async def _prompt(self, session: AGISession, menu: Menu, choices: _Choices) -> str:
        """Play the menu's prompt and collect her keys ("" for silence)."""
        timeout_ms = int(menu.timeout * 1000)
        if menu.all_languages and choices.language is None:
            languages = list(self.menu.settings.languages)
        else:
            languages = [self._language(choices)]
        # Every language but the last plays interruptibly; the last one waits
        # for keys. A key pressed during an earlier language counts at once.
        escape = "".join(sorted(menu.options)) if menu.kind == "choice" else "0123456789"
        for language in languages[:-1]:
            digit = await session.stream_file(self.menu.sound(menu.prompt, language), escape)
            if digit is not None:
                if menu.kind == "choice" or menu.max_digits == 1:
                    return digit
                rest = await session.get_data("silence/1", timeout_ms, menu.max_digits - 1)
                return digit + rest.digits
        keyed = await session.get_data(
            self.menu.sound(menu.prompt, languages[-1]), timeout_ms, menu.max_digits
        )
        return keyed.digits

    async def _arm_watchdog(self, session: AGISession) -> None:
        await session.set_variable(
            "TIMEOUT(absolute)", str(self.menu.settings.watchdog_seconds)
        )

    def _language(self, choices: _Choices) -> str:
        return choices.language or self.menu.settings.default_language

    def _outcome(self, choices: _Choices, path: list[IvrStep], defaulted: bool) -> IvrOutcome:
        ivr = self.menu
        route_name = choices.route
        if route_name is None:
            route_name = ivr.default_route
            defaulted = True
        route = ivr.routes[route_name]
        language = route.language or self._language(choices)
        flags = list(choices.flags)
        for flag in route.flags:
            if flag not in flags:
                flags.append(flag)
        return IvrOutcome(
            route=route_name,
            queue=route.queue_for(language),
            priority=route.priority,
            category=route.category,
            risk=route.risk,
            language=language,
            flags=tuple(flags),
            callback_ok=choices.callback_ok,
            queue_timeout=route.queue_timeout,
            reference=choices.reference,
            path=path,
            defaulted=defaulted,
        )
