# Shared by the Xilinx-tool stubs (tests only). A stub records each call ("CALL ..." lines), checks the shape of
# its arguments and fails on anything else: a command the real tool lacks hits `unknown` and is an error.
set ::calls {}
proc log_call {args} { lappend ::calls $args; puts "CALL $args" }
proc need {cond msg} { if {![uplevel 1 [list expr $cond]]} { error "stub check failed: $msg" } }
proc opt {args_list name {default ""}} {
    set i [lsearch -exact $args_list $name]
    if {$i < 0} { return $default }
    return [lindex $args_list [expr {$i + 1}]]
}
proc write_text {path text} {
    file mkdir [file dirname $path]
    set f [open $path w]
    puts -nonewline $f $text
    close $f
}
proc read_text {path} {
    set f [open $path]
    set text [read $f]
    close $f
    return $text
}
clock format 0  ;# load Tcl's own auto-loaded commands before `unknown` becomes strict
rename unknown __tcl_unknown
proc unknown {args} {
    set name [lindex $args 0]
    if {[string match ::tcl::* $name] || [string match tcl::* $name]} { return [uplevel 1 [list __tcl_unknown {*}$args]] }
    error "stub: '$name' is not a command of $::stub_tool"
}
