"""rclpy plumbing the nodes share: declaring the parameter tables of `pipeline.parameters`, validating
live changes, sensor QoS, and /diagnostics."""
from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter as RosParameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from seg_perception.pipeline.parameters import Parameter

_ROS_TYPES = {"bool": ParameterType.PARAMETER_BOOL, "integer": ParameterType.PARAMETER_INTEGER,
              "double": ParameterType.PARAMETER_DOUBLE, "string": ParameterType.PARAMETER_STRING,
              "string_array": ParameterType.PARAMETER_STRING_ARRAY}


def descriptor(parameter: Parameter) -> ParameterDescriptor:
    """The ROS descriptor of a table entry: type, description (with the accepted values), range, read-only."""
    text = parameter.description
    if parameter.choices:
        text += f" [{' | '.join(parameter.choices)}]"
    result = ParameterDescriptor(name=parameter.name, type=_ROS_TYPES[parameter.type], description=text,
                                 read_only=parameter.read_only)
    if parameter.type == "integer" and parameter.low is not None and parameter.high is not None:
        result.integer_range = [IntegerRange(from_value=int(parameter.low), to_value=int(parameter.high), step=1)]
    if parameter.type == "double" and parameter.low is not None and parameter.high is not None:
        result.floating_point_range = [FloatingPointRange(from_value=float(parameter.low),
                                                          to_value=float(parameter.high), step=0.0)]
    return result


def declare(node: Node, table: tuple[Parameter, ...]) -> dict[str, Any]:
    """Declare every parameter of `table` (with overrides from the command line or a params file) and
    return their values; a value the table does not accept raises ValueError naming it."""
    values = {}
    for parameter in table:
        default = parameter.default
        if parameter.type == "string_array" and not default:
            default = RosParameter.Type.STRING_ARRAY  # rclpy would take an empty list for a byte array
        value = node.declare_parameter(parameter.name, default, descriptor(parameter)).value
        if parameter.type == "string_array":
            value = list(value or [])
        reason = parameter.check(value)
        if reason:
            raise ValueError(reason)
        values[parameter.name] = value
    refuse_unknown(node)
    return values


def refuse_unknown(node: Node) -> None:
    """Raise ValueError for a parameter given to `node` (command line, params file, launch) that it does
    not declare: a misspelt `modle` would otherwise be ignored and the node run on defaults. ROS's own
    QoS overrides (`qos_overrides.*`) pass. rclpy keeps the overrides only in a private attribute."""
    given = getattr(node, "_parameter_overrides", {}) or {}
    unknown = sorted(n for n in given if not node.has_parameter(n) and not n.startswith("qos_overrides."))
    if unknown:
        accepted = sorted(n for n in node.get_parameters_by_prefix("") if not n.startswith("qos_overrides."))
        hints = {n: difflib.get_close_matches(n, accepted, 1) for n in unknown}
        named = ", ".join(f"{n!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for n, h in hints.items())
        raise ValueError(f"{node.get_name()}: unknown parameter(s) {named}; accepted: {', '.join(accepted)}")


def validating_callback(table: tuple[Parameter, ...],
                        apply: Callable[[dict[str, Any]], str | None]) -> Callable[[list[Any]], SetParametersResult]:
    """An on-set-parameters callback: refuses read-only and invalid values with the reason, then hands
    the accepted changes (name → value) to `apply`, which may refuse them too by returning a reason."""
    by_name = {p.name: p for p in table}

    def callback(changes: list[Any]) -> SetParametersResult:
        accepted = {}
        for change in changes:
            parameter = by_name.get(change.name)
            if parameter is None:
                continue  # not ours (e.g. use_sim_time)
            value = list(change.value) if parameter.type == "string_array" else change.value
            reason = parameter.check(value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            accepted[change.name] = value
        reason = apply(accepted) if accepted else None
        return SetParametersResult(successful=reason is None, reason=reason or "")

    return callback


def qos_mismatch_warning(node: Node, topic: str, counts: dict[str, int] | None = None) -> Any:
    """Subscription event callbacks that say, at WARN, when a publisher's QoS cannot match the subscription
    (a best-effort driver and a reliable subscription exchange nothing, silently otherwise), and count it."""
    from rclpy.event_handler import SubscriptionEventCallbacks

    def incompatible(event: Any) -> None:
        if counts is not None:
            counts[f"incompatible QoS on {topic}"] = counts.get(f"incompatible QoS on {topic}", 0) + 1
        node.get_logger().warning(
            f"a publisher of {topic} offers QoS this subscription cannot match (last policy: {event.last_policy_kind}); "
            f"nothing arrives from it: a best-effort publisher needs qos_reliability:=best_effort",
            throttle_duration_sec=10.0)

    return SubscriptionEventCallbacks(incompatible_qos=incompatible)


def help_requested(args: list[str] | None, doc: str | None) -> bool:
    """Print a node's usage (its module docstring) when -h/--help comes before any --ros-args; True then.
    rclpy itself would ignore the flag and start the node."""
    argv = sys.argv[1:] if args is None else list(args)
    own = argv[:argv.index("--ros-args")] if "--ros-args" in argv else argv
    if not {"-h", "--help"} & set(own):
        return False
    print((doc or "").strip())
    print("\nParameters: ros2 run seg_perception <node> --ros-args -p name:=value (or --params-file FILE)")
    return True


def sensor_qos(reliability: str, depth: int) -> QoSProfile:
    """Keep-last QoS for sensor streams. Reliable by default: over Fast DDS a best-effort subscription lost
    two thirds of 0.7–2 MB images and clouds at 10 Hz on one machine, a reliable one none
    (bench/bench_qos.py); a driver that publishes best effort needs best_effort here (QoS must match)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort"
                      else ReliabilityPolicy.RELIABLE)


def diagnostic_array(node: Node, name: str, values: dict[str, Any], *, level: bytes = DiagnosticStatus.OK,
                     message: str = "ok") -> DiagnosticArray:
    """One /diagnostics message with a status named `<node name>: <name>` holding `values`; `level` is
    DiagnosticStatus.OK, WARN, ERROR or STALE (bytes in rclpy)."""
    status = DiagnosticStatus(level=level, name=f"{node.get_name()}: {name}", message=message,
                              hardware_id=node.get_fully_qualified_name(),
                              values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()])
    return DiagnosticArray(header=_header(node), status=[status])


def _header(node: Node) -> Any:
    from std_msgs.msg import Header

    return Header(stamp=node.get_clock().now().to_msg())
