# One cmd_<name>.cpp per subcommand.
set(MOE_CMD_SOURCES
)
