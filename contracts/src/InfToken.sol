// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title InfToken: a standard ERC-20 with ERC-2612 permit, the INF token for tests and dev.
/// @notice The deployer is the minter, so a dev environment can fund test users.
contract InfToken is ERC20, ERC20Permit {
    address public immutable minter;

    error OnlyMinter();

    constructor(uint256 initialSupply) ERC20("INF Token", "INF") ERC20Permit("INF Token") {
        minter = msg.sender;
        _mint(msg.sender, initialSupply);
    }

    function mint(address to, uint256 amount) external {
        if (msg.sender != minter) revert OnlyMinter();
        _mint(to, amount);
    }
}
