"""The ROS 2 shell: rclpy nodes and the rclpy side of message conversion. The only place that imports rclpy."""
